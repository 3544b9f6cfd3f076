"""The flow executor and its pieces, in-process: parallel branches, error policies,
timeouts, retries, gates, cancellation, safe expressions."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from vlm_monitor.flows.executor import RunRecord, execute
from vlm_monitor.flows.expr import Expression, ExpressionError
from vlm_monitor.flows.graph import FlowValidationError
from vlm_monitor.flows.manager import parse_flow
from vlm_monitor.flows.nodes.base import RunContext

POOL = ThreadPoolExecutor(2)


def wait(node_id: str, seconds: float, **extra: object) -> dict:
    return {"id": node_id, "type": "wait", "params": {"seconds": seconds}, **extra}


async def run_flow(doc: dict, cancel_after: float | None = None) -> tuple[RunRecord, float]:
    _, graph = parse_flow(doc)
    record = RunRecord.new(graph, "test")
    events: list[tuple[str, str]] = []
    ctx = RunContext(None, graph.flow, record.run_id, None, POOL)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    task = asyncio.create_task(
        execute(graph, ctx, record, lambda run, node: events.append((node.id, node.status)))
    )
    if cancel_after is not None:
        await asyncio.sleep(cancel_after)
        task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    record.events = events  # type: ignore[attr-defined]
    return record, time.perf_counter() - t0


async def test_diamond_runs_its_branches_at_once() -> None:
    doc = {
        "id": "diamond",
        "nodes": [wait("a", 0), wait("b", 1), wait("c", 1), wait("d", 0)],
        "edges": [["a", "b"], ["a", "c"], ["b", "d"], ["c", "d"]],
    }
    record, elapsed = await run_flow(doc)
    assert record.status == "succeeded"
    assert elapsed < 1.6, f"{elapsed:.2f} s: serial would take 2 s"
    b, c = record.nodes["b"], record.nodes["c"]
    assert abs(b.started_at - c.started_at) < 0.1  # started together
    assert record.nodes["d"].started_at >= max(b.finished_at, c.finished_at)


async def test_wide_graph_takes_the_critical_path_not_the_sum() -> None:
    nodes = [wait("start", 0)] + [wait(f"w{i}", 0.5) for i in range(12)] + [wait("end", 0)]
    edges = [["start", f"w{i}"] for i in range(12)] + [[f"w{i}", "end"] for i in range(12)]
    record, elapsed = await run_flow({"id": "wide", "nodes": nodes, "edges": edges})
    assert record.status == "succeeded"
    assert elapsed < 1.2, f"{elapsed:.2f} s: serial would take 6 s"


def bad(node_id: str, **extra: object) -> dict:
    # An expression that fails at run time: input 'a' has no key 'missing'.
    return {"id": node_id, "type": "condition", "params": {"expr": "a.missing > 1"}, **extra}


async def test_fail_run_cancels_the_rest() -> None:
    doc = {
        "id": "f",
        "nodes": [wait("a", 0), bad("boom"), wait("slow", 5), wait("after", 0)],
        "edges": [["a", "boom"], ["a", "slow"], ["boom", "after"]],
    }
    record, elapsed = await run_flow(doc)
    assert record.status == "failed" and "boom" in record.error
    assert "no key 'missing'" in record.nodes["boom"].error
    assert record.nodes["slow"].status == "cancelled"
    assert record.nodes["after"].status == "skipped"
    assert elapsed < 2


async def test_skip_branch_and_continue() -> None:
    doc = {
        "id": "f",
        "nodes": [
            wait("a", 0),
            bad("boom", on_error="skip_branch"),
            wait("child", 0),
            wait("other", 0.1),
            bad("soft", on_error="continue"),
            wait("after_soft", 0),
        ],
        "edges": [
            ["a", "boom"],
            ["boom", "child"],
            ["a", "other"],
            ["a", "soft"],
            ["soft", "after_soft"],
        ],
    }
    record, _ = await run_flow(doc)
    status = {nid: n.status for nid, n in record.nodes.items()}
    assert record.status == "succeeded"
    assert status == {
        "a": "succeeded",
        "boom": "failed",
        "child": "skipped",
        "other": "succeeded",
        "soft": "failed",
        "after_soft": "succeeded",
    }
    assert record.nodes["child"].reason == "'boom' failed"


async def test_timeout_and_retries() -> None:
    doc = {
        "id": "f",
        "nodes": [
            wait("slow", 5, timeout_s=0.1, retries=2, retry_delay_s=0.05, on_error="continue")
        ],
    }
    record, elapsed = await run_flow(doc)
    slow = record.nodes["slow"]
    assert slow.status == "failed" and slow.attempts == 3
    assert slow.error == "timed out after 0.1 s"
    assert elapsed < 1.5


async def test_a_closed_gate_skips_what_follows() -> None:
    doc = {
        "id": "g",
        "nodes": [
            wait("a", 0),
            {"id": "is_long", "type": "condition", "params": {"expr": "a.waited_s > 10"}},
            wait("then", 0),
        ],
        "edges": [["a", "is_long"], ["is_long", "then"]],
    }
    record, _ = await run_flow(doc)
    assert record.nodes["is_long"].output == {"value": False, "expr": "a.waited_s > 10"}
    assert record.nodes["then"].status == "skipped"
    assert record.nodes["then"].reason == "gate 'is_long' is closed"


async def test_cancel_leaves_no_task_behind() -> None:
    before = {t for t in asyncio.all_tasks()}
    doc = {"id": "c", "nodes": [wait("a", 30), wait("b", 30), wait("c", 0)], "edges": [["a", "c"]]}
    record, elapsed = await run_flow(doc, cancel_after=0.2)
    assert elapsed < 1
    assert record.status == "cancelled"
    assert {n.status for n in record.nodes.values()} == {"cancelled", "skipped"}
    await asyncio.sleep(0)
    leftover = [t for t in asyncio.all_tasks() - before if not t.done()]
    assert [t.get_name() for t in leftover if t.get_name().startswith("flow:")] == []


def test_validation_names_the_node() -> None:
    cases = {
        "unknown type": ({"nodes": [{"id": "x", "type": "teleport"}]}, "node 'x': unknown type"),
        "cycle": (
            {"nodes": [wait("a", 0), wait("b", 0)], "edges": [["a", "b"], ["b", "a"]]},
            "cycle a -> b -> a",
        ),
        "missing input": (
            {"nodes": [{"id": "c", "type": "condition", "params": {"expr": "true"}}]},
            "node 'c': condition needs at least 1 input(s), has 0",
        ),
        "extra input": (
            {
                "stream": "s",
                "nodes": [
                    {"id": "f1", "type": "frame"},
                    {"id": "f2", "type": "frame"},
                    {"id": "m", "type": "motion"},
                ],
                "edges": [["f1", "m"], ["f2", "m"]],
            },
            "node 'm': motion takes at most 1 input(s), has 2",
        ),
        "type mismatch": (
            {"nodes": [wait("w", 0), {"id": "o", "type": "ocr"}], "edges": [["w", "o"]]},
            "node 'o': input from 'w' is data, ocr accepts frame",
        ),
        "bad params": ({"nodes": [wait("w", -1)]}, "node 'w': params.seconds"),
        "bad expression": (
            {
                "nodes": [
                    wait("a", 0),
                    {"id": "c", "type": "condition", "params": {"expr": "a.x >"}},
                ],
                "edges": [["a", "c"]],
            },
            "node 'c': params.expr: syntax error",
        ),
        "unknown name": (
            {
                "nodes": [
                    wait("a", 0),
                    {"id": "c", "type": "condition", "params": {"expr": "b.x > 1"}},
                ],
                "edges": [["a", "c"]],
            },
            "node 'c': params.expr uses ['b']",
        ),
        "no stream": ({"nodes": [{"id": "f", "type": "frame"}]}, "node 'f': frame needs a stream"),
        "unknown edge": ({"nodes": [wait("a", 0)], "edges": [["a", "zz"]]}, "unknown node 'zz'"),
        "duplicate": ({"nodes": [wait("a", 0), wait("a", 1)]}, "node 'a': duplicate id"),
        "bad node field": ({"nodes": [wait("a", 0, on_error="explode")]}, "node 'a'.on_error"),
    }
    for name, (doc, expected) in cases.items():
        with pytest.raises(FlowValidationError) as info:
            parse_flow({"id": "bad", **doc})
        assert any(expected in e for e in info.value.errors), (name, info.value.errors)


def test_expressions_are_safe() -> None:
    e = Expression("motion.level > 0.05 and ('EXIT' in ocr.text or len(ocr.words) > 3)")
    assert e.names == {"motion", "ocr"}
    assert e.evaluate({"motion": {"level": 0.1}, "ocr": {"text": "EXIT", "words": []}}) is True
    for hostile in (
        "__import__('os').system('true')",
        "a.__class__",
        "[x for x in a]",
        "(lambda: 1)()",
        "open('/etc/passwd')",
        "a.b()",
        "'x' * 100000000",
    ):
        with pytest.raises(ExpressionError):
            Expression(hostile).evaluate({"a": {"b": 1}})
