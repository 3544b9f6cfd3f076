"""A started flow: its node instances, its trigger, its runs and their overlap policy."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from concurrent.futures import Executor
from typing import Any, Protocol

from vlm_monitor.flows.executor import NodeRecord, RunRecord, execute
from vlm_monitor.flows.expr import Expression, ExpressionError
from vlm_monitor.flows.graph import Graph
from vlm_monitor.flows.nodes.base import RunContext
from vlm_monitor.flows.ports import FlowEvents, FlowPorts

log = logging.getLogger("vlm_monitor.flows")
STOP_WAIT_S = 10.0


class RunObserver(Protocol):
    """Told of each run's progress, on the event loop (the flow manager: records, events)."""

    def run_started(self, record: RunRecord) -> None: ...

    def run_finished(self, record: RunRecord) -> None: ...

    def node_changed(self, record: RunRecord, node: NodeRecord) -> None: ...


class FlowInstance:
    """A started flow: its node instances, trigger task and runs."""

    def __init__(
        self, graph: Graph, ports: FlowPorts, events: FlowEvents, runs: RunObserver, pool: Executor
    ) -> None:
        self.graph, self.flow = graph, graph.flow
        self.ports, self.events, self.observer, self.pool = ports, events, runs, pool
        self.runs: dict[str, tuple[asyncio.Task[None], RunRecord]] = {}
        self.queue: collections.deque[tuple[str, dict[str, Any] | None]] = collections.deque()
        self.stats = {k: 0 for k in ("triggered", "skipped", "queue_dropped", "cancelled_previous")}
        self.trigger_task: asyncio.Task[None] | None = None
        self.started_at = time.time()

    def trigger(self, kind: str, event: dict[str, Any] | None = None) -> str | None:
        """Starts a run (returns its id) or applies the overlap policy (None)."""
        self.stats["triggered"] += 1
        flow = self.flow
        if len(self.runs) >= flow.max_concurrent_runs:
            if flow.overlap == "skip":
                self.stats["skipped"] += 1
                return None
            if flow.overlap == "queue":
                if len(self.queue) >= flow.max_queued:
                    self.stats["queue_dropped"] += 1
                else:
                    self.queue.append((kind, event))
                return None
            oldest_task, _ = next(iter(self.runs.values()))
            oldest_task.cancel()
            self.stats["cancelled_previous"] += 1
        return self._start_run(kind, event)

    def _start_run(self, kind: str, event: dict[str, Any] | None) -> str:
        record = RunRecord.new(self.graph, kind)
        ctx = RunContext(self.ports, self.flow, record.run_id, event, self.pool)
        task = asyncio.create_task(
            self._run(record, ctx), name=f"flow:{self.flow.id}:run:{record.run_id}"
        )
        self.runs[record.run_id] = (task, record)
        return record.run_id

    async def _run(self, record: RunRecord, ctx: RunContext) -> None:
        observer = self.observer
        observer.run_started(record)
        try:
            await execute(self.graph, ctx, record, observer.node_changed)
        except asyncio.CancelledError:
            pass  # the record says "cancelled"; stopping waits for this task to end
        except Exception as exc:  # a bug in a node's bookkeeping, not a node failure
            log.exception("flow run crashed", extra={"fields": {"flow": self.flow.id}})
            record.status, record.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            self.runs.pop(record.run_id, None)
            observer.run_finished(record)
        if self.queue and self.trigger_task is not None and not self.trigger_task.done():
            kind, event = self.queue.popleft()
            self._start_run(kind, event)

    async def start(self) -> None:
        started = []
        try:
            for node in self.graph.nodes.values():
                await node.start(self.ports)
                started.append(node)
        except Exception:
            for node in started:
                await node.stop()
            raise
        self.trigger_task = asyncio.create_task(
            self._trigger_loop(), name=f"flow:{self.flow.id}:trigger"
        )

    async def stop(self) -> None:
        if self.trigger_task is not None:
            self.trigger_task.cancel()
        self.queue.clear()
        tasks = [task for task, _ in self.runs.values()]
        for task in tasks:
            task.cancel()
        waiting = [t for t in (self.trigger_task, *tasks) if t is not None]
        if waiting:
            await asyncio.wait(waiting, timeout=STOP_WAIT_S)
        for node in self.graph.nodes.values():
            try:
                await node.stop()
            except Exception:
                log.exception("node stop failed", extra={"fields": {"flow": self.flow.id}})

    async def _trigger_loop(self) -> None:
        trigger = self.flow.trigger
        if trigger.kind == "interval":
            period = float(trigger.seconds or 1.0)
            due = time.monotonic()
            while True:
                due += period
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                due = max(due, time.monotonic() - period)  # no burst after a stall
                self.trigger("interval")
        elif trigger.kind in ("event", "clip"):
            await self._event_loop()
        else:
            await asyncio.Event().wait()  # manual: runs come from POST /run only

    async def _event_loop(self) -> None:
        trigger = self.flow.trigger
        wanted = "result" if trigger.kind == "clip" else trigger.event
        stream = trigger.stream or (self.flow.stream if trigger.kind == "clip" else None)
        when = Expression(trigger.when) if trigger.when else None
        async with contextlib.aclosing(self.events.follow()) as events:
            async for doc in events:
                if doc["type"] != wanted or doc.get("flow") == self.flow.id:
                    continue
                if stream is not None and doc.get("stream") != stream:
                    continue
                if trigger.analyzer is not None and doc.get("analyzer") != trigger.analyzer:
                    continue
                if when is not None:
                    try:
                        if not await when.evaluate_in_thread(doc):
                            continue
                    except ExpressionError:
                        continue
                self.trigger(wanted or "event", doc)

    def status(self) -> dict[str, Any]:
        return {
            "active_runs": list(self.runs),
            "queued": len(self.queue),
            "started_at": self.started_at,
            **self.stats,
        }
