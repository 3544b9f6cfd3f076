"""The registry of flows: stored definitions, started instances, triggers and runs.

Mutations (create, replace, delete, start, stop) are serialised by one asyncio lock, so any
number of clients may start and stop flows at once and the registry stays consistent (the
original flow backend's unlocked ``active_flows`` is the bug this replaces). Reads are
snapshots. A started flow is a ``FlowInstance`` (``instance.py``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import ValidationError

from vlm_monitor.flows.executor import NodeRecord, RunRecord
from vlm_monitor.flows.expr import Expression, ExpressionError
from vlm_monitor.flows.graph import FlowValidationError, Graph, build_graph
from vlm_monitor.flows.instance import FlowInstance
from vlm_monitor.flows.model import FlowDefinition
from vlm_monitor.flows.ports import FlowEvents, FlowPorts, FlowStore
from vlm_monitor.types import ConflictError, Event, LimitError, NotFoundError

log = logging.getLogger("vlm_monitor.flows")
RECENT_RUNS = 20


class FlowExistsError(ConflictError):
    def __init__(self, flow_id: str) -> None:
        super().__init__(f"flow {flow_id!r} already exists (PUT replaces)")
        self.flow_id = flow_id


class FlowNotFoundError(NotFoundError, KeyError):
    def __init__(self, flow_id: str) -> None:
        super().__init__(f"unknown flow {flow_id!r}")
        self.flow_id = flow_id


class FlowRunningError(ConflictError):
    """The flow comes from the configuration file: it is changed there, not over the API."""


def parse_flow(doc: Any) -> tuple[FlowDefinition, Graph]:
    """Validates a definition; raises FlowValidationError with every problem named."""
    try:
        flow = FlowDefinition.model_validate(doc)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            loc = list(err["loc"])
            if len(loc) >= 2 and loc[0] == "nodes" and isinstance(loc[1], int):
                nodes = doc.get("nodes") if isinstance(doc, dict) else None
                node = nodes[loc[1]] if isinstance(nodes, list) and loc[1] < len(nodes) else None
                name = node.get("id") if isinstance(node, dict) else None
                loc[:2] = [f"node {name!r}" if name else f"nodes.{loc[1]}"]
            where = ".".join(str(p) for p in loc) or "body"
            errors.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        raise FlowValidationError(errors) from None
    if flow.trigger.when is not None:
        try:
            Expression(flow.trigger.when)
        except ExpressionError as exc:
            raise FlowValidationError([f"trigger.when: {exc}"]) from None
    return flow, build_graph(flow)


class FlowManager:
    """``ports``: what nodes use; ``events``: where the manager publishes flow states, runs and
    node changes, and follows the events that trigger flows; ``store``: definitions added over
    the API and finished runs; at most ``max_flows`` definitions."""

    def __init__(
        self,
        ports: FlowPorts,
        events: FlowEvents,
        store: FlowStore,
        max_flows: int,
        threads: int = 8,
    ) -> None:
        self.ports, self.events, self.store, self.max_flows = ports, events, store, max_flows
        self.definitions: dict[str, FlowDefinition] = {}
        self.from_config: set[str] = set()
        self.active: dict[str, FlowInstance] = {}
        self.recent: dict[str, collections.deque[RunRecord]] = {}
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="flow")
        self._lock = asyncio.Lock()
        self.runs_total: collections.Counter[str] = collections.Counter()
        self._background: set[asyncio.Task[None]] = set()

    def _instance(self, graph: Graph) -> FlowInstance:
        return FlowInstance(graph, self.ports, self.events, self, self.pool)

    async def load(self, config_flows: list[dict[str, Any]]) -> None:
        for doc in config_flows:
            flow, _ = parse_flow(doc)  # already checked by the CLI; raises if not
            self.definitions[flow.id] = flow
            self.from_config.add(flow.id)
        for doc in await self.store.load_flows():
            try:
                flow, _ = parse_flow(doc)
            except FlowValidationError as exc:
                log.error("stored flow is invalid; skipped", extra={"fields": {"error": str(exc)}})
                continue
            self.definitions.setdefault(flow.id, flow)
        for flow_id in self.from_config:
            if self.definitions[flow_id].enabled:
                await self.start(flow_id)

    def get(self, flow_id: str) -> FlowDefinition:
        try:
            return self.definitions[flow_id]
        except KeyError:
            raise FlowNotFoundError(flow_id) from None

    async def create(self, doc: Any, replace: bool = False) -> FlowDefinition:
        flow, _ = parse_flow(doc)
        async with self._lock:
            if flow.id in self.definitions and not replace:
                raise FlowExistsError(flow.id)
            limit = self.max_flows
            if flow.id not in self.definitions and len(self.definitions) >= limit:
                raise LimitError(f"at most {limit} flows (server.max_flows)")
            if flow.id in self.from_config:
                raise FlowRunningError(f"flow {flow.id!r} comes from the config file")
            was_running = flow.id in self.active
            if was_running:
                await self._stop(flow.id)
            await self.store.save_flow(flow.id, flow.model_dump(mode="json"))
            self.definitions[flow.id] = flow
            if was_running:
                await self._start(flow.id)
        return flow

    async def delete(self, flow_id: str) -> None:
        async with self._lock:
            self.get(flow_id)
            if flow_id in self.from_config:
                raise FlowRunningError(f"flow {flow_id!r} comes from the config file")
            await self._stop(flow_id)
            del self.definitions[flow_id]
            await self.store.delete_flow(flow_id)

    async def start(self, flow_id: str) -> bool:
        """False when it was already running."""
        async with self._lock:
            return await self._start(flow_id)

    async def _start(self, flow_id: str) -> bool:
        flow = self.get(flow_id)
        if flow_id in self.active:
            return False
        _, graph = parse_flow(flow.model_dump(mode="json"))  # fresh node instances
        instance = self._instance(graph)
        await instance.start()
        self.active[flow_id] = instance
        log.info("flow started", extra={"fields": {"flow": flow_id, "trigger": flow.trigger.kind}})
        self._publish_state(flow_id)
        return True

    async def stop(self, flow_id: str) -> bool:
        async with self._lock:
            self.get(flow_id)
            return await self._stop(flow_id)

    async def _stop(self, flow_id: str) -> bool:
        instance = self.active.pop(flow_id, None)
        if instance is None:
            return False
        await instance.stop()
        log.info("flow stopped", extra={"fields": {"flow": flow_id}})
        self._publish_state(flow_id)
        return True

    async def stop_all(self) -> None:
        async with self._lock:
            for flow_id in list(self.active):
                await self._stop(flow_id)
        await asyncio.to_thread(self.pool.shutdown, wait=True, cancel_futures=True)

    async def run_now(self, flow_id: str) -> str:
        """One run now. A stopped flow runs on a temporary instance, stopped afterwards."""
        flow = self.get(flow_id)
        instance = self.active.get(flow_id)
        if instance is not None:
            return instance._start_run("manual", None)
        _, graph = parse_flow(flow.model_dump(mode="json"))
        temporary = self._instance(graph)
        for node in graph.nodes.values():
            await node.start(self.ports)
        run_id = temporary._start_run("manual", None)
        task, _ = temporary.runs[run_id]

        async def cleanup() -> None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await temporary.stop()

        cleaner = asyncio.create_task(cleanup(), name=f"flow:{flow_id}:cleanup")
        self._background.add(cleaner)
        cleaner.add_done_callback(self._background.discard)
        return run_id

    # Callbacks from the executor, on the event loop.
    def run_started(self, record: RunRecord) -> None:
        self.recent.setdefault(record.flow_id, collections.deque(maxlen=RECENT_RUNS)).append(record)
        self._publish_run(record)

    def run_finished(self, record: RunRecord) -> None:
        self.runs_total[record.status] += 1
        self._publish_run(record)
        doc = record.to_json()
        self.pool.submit(self.store.save_run_sync, doc)

    def node_changed(self, record: RunRecord, node: NodeRecord) -> None:
        data = {
            "flow": record.flow_id,
            "run_id": record.run_id,
            "node": node.id,
            "node_type": node.type,
            "status": node.status,
            "duration_s": node.duration_s,
            "attempts": node.attempts,
            "error": node.error if node.status == "failed" else None,
            "reason": node.reason,
        }
        self.events.publish(Event("flow.node", self.definitions[record.flow_id].stream, data))

    def _publish_run(self, record: RunRecord) -> None:
        data = {
            "flow": record.flow_id,
            "run_id": record.run_id,
            "status": record.status,
            "trigger": record.trigger,
            "started_at": record.started_at,
            "duration_s": record.duration_s,
            "error": record.error,
        }
        flow = self.definitions.get(record.flow_id)
        self.events.publish(Event("flow.run", flow.stream if flow else None, data))

    def _publish_state(self, flow_id: str) -> None:
        state = "running" if flow_id in self.active else "stopped"
        flow = self.definitions.get(flow_id)
        self.events.publish(
            Event("flow.state", flow.stream if flow else None, {"flow": flow_id, "state": state})
        )

    def live_tasks(self, flow_id: str) -> int:
        prefix = f"flow:{flow_id}:"
        return sum(1 for t in asyncio.all_tasks() if t.get_name().startswith(prefix))

    def status(self, flow_id: str) -> dict[str, Any]:
        flow = self.get(flow_id)
        instance = self.active.get(flow_id)
        recent = list(self.recent.get(flow_id, ()))
        return {
            "id": flow_id,
            "name": flow.name,
            "trigger": flow.trigger.kind,
            "state": "running" if instance else "stopped",
            "source": "config" if flow_id in self.from_config else "api",
            "instance": instance.status() if instance else None,
            "live_tasks": self.live_tasks(flow_id),
            "last_run": recent[-1].to_json() if recent else None,
        }

    def run_record(self, flow_id: str, run_id: str) -> RunRecord | None:
        for record in self.recent.get(flow_id, ()):
            if record.run_id == run_id:
                return record
        return None
