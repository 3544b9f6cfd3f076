"""Flow executor benchmark: prints one JSON object on stdout (progress on stderr).

- overhead: a 50-node graph of no-op nodes (``wait`` 0 s), as a chain and as 5 layers of 10;
  wall time per run and per node (the executor's own cost: scheduling, records, events);
- throughput: runs/s of the 50-node layered graph with 1 and with 16 runs in flight;
- parallelism: wide and diamond graphs of 0.5 s waits; wall time vs the critical path
  (goal <= 1.05).

Run: .venv/bin/python bench/flows.py
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from vlm_monitor.flows.executor import RunRecord, execute
from vlm_monitor.flows.graph import Graph
from vlm_monitor.flows.manager import parse_flow
from vlm_monitor.flows.nodes.base import RunContext

POOL = ThreadPoolExecutor(2)


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def wait(node_id: str, seconds: float) -> dict:
    return {"id": node_id, "type": "wait", "params": {"seconds": seconds}}


def chain(n: int) -> dict:
    nodes = [wait(f"n{i}", 0) for i in range(n)]
    return {"id": "chain", "nodes": nodes, "edges": [[f"n{i}", f"n{i + 1}"] for i in range(n - 1)]}


def layered(layers: int, width: int, seconds: float = 0.0) -> dict:
    nodes, edges = [], []
    for layer in range(layers):
        for j in range(width):
            nodes.append(wait(f"l{layer}_{j}", seconds))
            if layer:
                edges += [[f"l{layer - 1}_{k}", f"l{layer}_{j}"] for k in range(width)]
    return {"id": f"layered-{layers}x{width}-{seconds}", "nodes": nodes, "edges": edges}


_graphs: dict[str, Graph] = {}


async def one_run(doc: dict, events: list[int]) -> float:
    """One run of an already validated graph (validation is not the executor's cost)."""
    graph = _graphs.get(doc["id"])
    if graph is None:
        graph = _graphs[doc["id"]] = parse_flow(doc)[1]
    record = RunRecord.new(graph, "bench")
    ctx = RunContext(None, graph.flow, record.run_id, None, POOL)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    await execute(graph, ctx, record, lambda run, node: events.append(1))
    assert record.status == "succeeded", record.error
    return time.perf_counter() - t0


async def overhead(doc: dict, runs: int = 200) -> dict:
    events: list[int] = []
    times = [await one_run(doc, events) for _ in range(runs)]
    per_run = statistics.median(times)
    n = len(doc["nodes"])
    return {
        "nodes": n,
        "run_ms_p50": round(per_run * 1000, 3),
        "per_node_us": round(per_run / n * 1e6, 1),
        "node_events_per_run": len(events) // runs,
    }


async def throughput(doc: dict, in_flight: int, seconds: float = 5.0) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await one_run(doc, [])
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return round(done / (time.perf_counter() - t0), 1)


async def parallelism() -> dict:
    out = {}
    wide = {
        "id": "wide",
        "nodes": [wait("start", 0), *(wait(f"w{i}", 0.5) for i in range(20)), wait("end", 0)],
        "edges": [["start", f"w{i}"] for i in range(20)] + [[f"w{i}", "end"] for i in range(20)],
    }
    diamond = {
        "id": "diamond",
        "nodes": [wait("a", 0.5), wait("b", 0.5), wait("c", 0.5), wait("d", 0.5)],
        "edges": [["a", "b"], ["a", "c"], ["b", "d"], ["c", "d"]],
    }
    for name, doc, critical in (
        ("wide_20x0.5s", wide, 0.5),
        ("diamond_0.5s", diamond, 1.5),
        ("layers_4x8x0.25s", layered(4, 8, 0.25), 1.0),
    ):
        wall = min([await one_run(doc, []) for _ in range(3)])
        serial = sum(n["params"]["seconds"] for n in doc["nodes"])
        out[name] = {
            "wall_s": round(wall, 4),
            "critical_path_s": critical,
            "sum_of_nodes_s": serial,
            "ratio": round(wall / critical, 4),
        }
        log(f"{name}: {out[name]}")
    out["goal_ratio_le_1.05"] = all(v["ratio"] <= 1.05 for v in out.values() if isinstance(v, dict))
    return out


async def main() -> dict:
    report: dict = {}
    report["overhead_chain_50"] = await overhead(chain(50))
    log(f"chain: {report['overhead_chain_50']}")
    report["overhead_layered_5x10"] = await overhead(layered(5, 10))
    log(f"layered: {report['overhead_layered_5x10']}")
    report["runs_per_s_50_nodes"] = {
        "1_in_flight": await throughput(layered(5, 10), 1),
        "16_in_flight": await throughput(layered(5, 10), 16),
    }
    log(f"throughput: {report['runs_per_s_50_nodes']}")
    report["parallelism"] = await parallelism()
    return report


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
