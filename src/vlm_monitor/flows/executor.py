"""Runs one flow run as a DAG: every node whose inputs are ready starts at once, as its own
asyncio task, so independent branches overlap (the original flow backend ran them one after
another, however independent). Per node: timeout, retries, and an error policy:

- ``fail_run``: the run fails; nodes still running are cancelled, the rest are skipped;
- ``skip_branch``: the node's descendants are skipped; other branches go on;
- ``continue``: the descendants run with ``None`` for that input.

Nodes after a closed gate (a false ``condition``, a "no" from ``watch``) are skipped, except
those that want to see the gate (``alert``). Cancelling the run cancels every node task and
waits for them: nothing is left running.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vlm_monitor.flows.graph import Graph
from vlm_monitor.flows.nodes.base import Gate, NodeError, RunContext, summarize

PENDING, RUNNING, SUCCEEDED, FAILED, SKIPPED, CANCELLED = (
    "pending", "running", "succeeded", "failed", "skipped", "cancelled",
)  # fmt: skip


@dataclass
class NodeRecord:
    id: str
    type: str
    status: str = PENDING
    started_at: float | None = None
    finished_at: float | None = None
    duration_s: float | None = None
    attempts: int = 0
    error: str | None = None
    output: Any = None
    reason: str | None = None  # why it was skipped

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class RunRecord:
    flow_id: str
    trigger: str
    nodes: dict[str, NodeRecord]
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    status: str = RUNNING
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    duration_s: float | None = None
    error: str | None = None

    @classmethod
    def new(cls, graph: Graph, trigger: str) -> RunRecord:
        nodes = {nid: NodeRecord(nid, node.spec.type) for nid, node in graph.nodes.items()}
        return cls(graph.flow.id, trigger, nodes)

    def to_json(self) -> dict[str, Any]:
        doc = {k: v for k, v in vars(self).items() if k != "nodes"}
        doc["nodes"] = [n.to_json() for n in self.nodes.values()]
        return doc


NodeListener = Callable[[RunRecord, NodeRecord], None]


async def _run_node(
    graph: Graph, nid: str, ctx: RunContext, inputs: dict[str, Any], rec: NodeRecord
) -> Any:
    node = graph.nodes[nid]
    spec = node.spec
    timeout = spec.timeout_s or type(node).default_timeout_s
    delay = spec.retry_delay_s
    for attempt in range(1, spec.retries + 2):
        rec.attempts = attempt
        try:
            async with asyncio.timeout(timeout):
                return await node.run(ctx, inputs)
        except TimeoutError:
            error = f"timed out after {timeout:g} s"
        except NodeError as exc:
            error = str(exc)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        rec.error = error
        if attempt <= spec.retries:
            await asyncio.sleep(delay)
            delay *= 2
    raise NodeError(rec.error or "failed")


async def execute(graph: Graph, ctx: RunContext, run: RunRecord, on_node: NodeListener) -> None:
    """Runs to the end (or until cancelled); ``run`` holds every node's status and timing."""
    outputs = ctx.outputs
    waiting = {nid: len(graph.preds.get(nid, [])) for nid in graph.nodes}
    tasks: dict[asyncio.Task[Any], str] = {}

    def finish(nid: str, status: str, reason: str | None = None) -> None:
        rec = run.nodes[nid]
        rec.status, rec.reason = status, reason
        rec.finished_at = time.time()
        if rec.started_at is not None:
            rec.duration_s = round(rec.finished_at - rec.started_at, 6)
        on_node(run, rec)

    def launch(nid: str) -> None:
        preds = graph.preds.get(nid, [])
        blocked = _blocked(graph, nid, preds, run, outputs)
        if blocked:
            finish(nid, SKIPPED, blocked)
            release(nid)
            return
        rec = run.nodes[nid]
        rec.status, rec.started_at = RUNNING, time.time()
        on_node(run, rec)
        inputs = {p: outputs.get(p) for p in preds}
        name = f"flow:{graph.flow.id}:{run.run_id}:{nid}"
        task = asyncio.create_task(_run_node(graph, nid, ctx, inputs, rec), name=name)
        tasks[task] = nid

    def release(nid: str) -> None:
        for s in graph.succs.get(nid, []):
            waiting[s] -= 1
            if waiting[s] == 0:
                launch(s)

    for nid, count in waiting.items():
        if count == 0:
            launch(nid)
    try:
        while tasks:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                nid = tasks.pop(task)
                exc = task.exception()
                if exc is None:
                    outputs[nid] = task.result()
                    run.nodes[nid].output = summarize(outputs[nid])
                    run.nodes[nid].error = None
                    finish(nid, SUCCEEDED)
                    release(nid)
                    continue
                finish(nid, FAILED)
                policy = graph.nodes[nid].spec.on_error
                if policy == "fail_run":
                    run.error = f"node {nid!r} failed: {run.nodes[nid].error}"
                    raise _RunFailed
                outputs[nid] = None
                release(nid)
    except (_RunFailed, asyncio.CancelledError) as stop:
        cancelled = isinstance(stop, asyncio.CancelledError)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for nid, rec in run.nodes.items():
            if rec.status == RUNNING:
                finish(nid, CANCELLED, "run stopped" if cancelled else "run failed")
            elif rec.status == PENDING:
                finish(nid, SKIPPED, "run stopped" if cancelled else "run failed")
        _close(run, CANCELLED if cancelled else FAILED)
        if cancelled:
            raise
        return
    _close(run, SUCCEEDED)


class _RunFailed(Exception):
    pass


def _blocked(
    graph: Graph, nid: str, preds: list[str], run: RunRecord, outputs: dict[str, Any]
) -> str | None:
    """Why ``nid`` must not run, or None."""
    for p in preds:
        rec = run.nodes[p]
        if rec.status == SKIPPED:
            return f"{p!r} was skipped"
        if rec.status == FAILED and graph.nodes[p].spec.on_error == "skip_branch":
            return f"{p!r} failed"
    if not type(graph.nodes[nid]).sees_gates:
        for p in preds:
            value = outputs.get(p)
            if isinstance(value, Gate) and not value.value:
                return f"gate {p!r} is closed"
    return None


def _close(run: RunRecord, status: str) -> None:
    run.status = status
    run.finished_at = time.time()
    run.duration_s = round(run.finished_at - run.started_at, 6)
