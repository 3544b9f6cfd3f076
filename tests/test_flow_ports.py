"""Flows run on their ports alone: a flow manager and its nodes built from FlowPorts filled
with small fakes (no server), reading frames from a hub and an analyzer's latest output, and
handing store, alert and broadcast outputs to the results port."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from vlm_monitor.analyzers.base import SharedModels, StreamContext
from vlm_monitor.analyzers.builtin import EmotionAnalyzer
from vlm_monitor.config import AnalyzerConfig
from vlm_monitor.flows.executor import RunRecord, execute
from vlm_monitor.flows.manager import FlowManager, parse_flow
from vlm_monitor.flows.nodes.base import RunContext
from vlm_monitor.flows.ports import FlowPorts
from vlm_monitor.hub import StreamHub
from vlm_monitor.testing import wait_until
from vlm_monitor.types import Event, Frame

POOL = ThreadPoolExecutor(2)


class Results:
    def __init__(self) -> None:
        self.outputs: list[dict[str, Any]] = []
        self.alerts: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    def flow_output(self, doc: dict[str, Any]) -> int:
        self.outputs.append(doc)
        return len(self.outputs)

    def alert(self, doc: dict[str, Any]) -> int:
        doc["id"] = len(self.alerts) + 1
        self.alerts.append(doc)
        return int(doc["id"])

    def flow_event(self, type_: str, stream: str | None, data: dict[str, Any]) -> dict[str, Any]:
        doc = {"seq": len(self.events) + 1, "type": type_, "stream": stream, **data}
        self.events.append(doc)
        return doc


class Events:
    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    def publish(self, event: Event) -> dict[str, Any]:
        doc = {"seq": len(self.published) + 1, **event.to_json()}
        self.published.append(doc)
        return doc

    async def follow(self) -> AsyncGenerator[dict[str, Any], None]:
        await asyncio.Event().wait()
        yield {}


class Store:
    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []

    async def load_flows(self) -> list[dict[str, Any]]:
        return []

    async def save_flow(self, flow_id: str, doc: dict[str, Any]) -> None:
        pass

    async def delete_flow(self, flow_id: str) -> None:
        pass

    def save_run_sync(self, doc: dict[str, Any]) -> None:
        self.runs.append(doc)


FLOW = {
    "id": "desk",
    "stream": "cam",
    "nodes": [
        {"id": "frame", "type": "frame", "params": {"size": "320x180"}},
        {"id": "motion", "type": "motion"},
        {"id": "heart", "type": "heart_rate"},
        {"id": "fast", "type": "condition", "params": {"expr": "heart.bpm > 100"}},
        {"id": "alarm", "type": "alert", "params": {"message": "$flow: fast heart on $stream"}},
        {"id": "keep", "type": "store", "params": {"label": "desk"}},
        {"id": "tell", "type": "broadcast", "params": {"message": "seen"}},
    ],
    "edges": [
        ["frame", "motion"],
        ["heart", "fast"],
        ["fast", "alarm"],
        ["motion", "keep"],
        ["heart", "keep"],
        ["motion", "tell"],
    ],
}


async def test_a_flow_runs_on_its_ports_alone() -> None:
    hub = StreamHub()
    picture = np.zeros((360, 640, 3), np.uint8)
    hub.publish(Frame("cam", 1, time.time(), picture))
    results, events, store = Results(), Events(), Store()
    readings = {("cam", "heart_rate"): {"bpm": 120.0, "confidence": 0.8}}
    ports = FlowPorts(
        hub=hub,
        results=results,
        providers={},
        latest_analysis=lambda stream, analyzer: readings.get((stream, analyzer)),
        face_models=SharedModels(),
        webhook_allow=[],
    )
    manager = FlowManager(ports, events, store, max_flows=4)
    try:
        await manager.create(FLOW)
        await manager.run_now("desk")
        record = await asyncio.to_thread(
            wait_until,
            lambda: (r := manager.recent["desk"][-1]).status != "running" and r,
            10,
            what="the run ends",
        )
        assert record.status == "succeeded", {n: r.error for n, r in record.nodes.items()}
        assert record.nodes["motion"].output["level"] == 0.0  # the first frame: no background
        assert record.nodes["heart"].output["bpm"] == 120.0
        assert [d["label"] for d in results.outputs] == ["desk"]
        assert results.outputs[0]["data"]["heart"]["bpm"] == 120.0
        assert [a["message"] for a in results.alerts] == ["desk: fast heart on cam"]
        assert [(e["type"], e["message"]) for e in results.events] == [("flow.message", "seen")]
        kinds = {doc["type"] for doc in events.published}
        assert {"flow.run", "flow.node"} <= kinds
        await asyncio.to_thread(wait_until, lambda: store.runs, 5, what="the run stored")
    finally:
        await manager.stop_all()


async def test_the_emotion_node_reads_a_face_as_the_analyzer_does() -> None:
    from skimage import data

    picture = np.ascontiguousarray(data.astronaut()[:, :, ::-1])  # RGB -> BGR
    hub = StreamHub()
    frame = Frame("cam", 1, time.time(), picture)
    hub.publish(frame)
    models = SharedModels()
    ports = FlowPorts(hub, Results(), {}, lambda stream, analyzer: None, models, [])
    doc = {
        "id": "mood",
        "stream": "cam",
        "nodes": [
            {"id": "frame", "type": "frame", "params": {"size": None}},
            {"id": "emotion", "type": "emotion"},
        ],
        "edges": [["frame", "emotion"]],
    }
    _, graph = parse_flow(doc)
    record = RunRecord.new(graph, "test")
    ctx = RunContext(ports, graph.flow, record.run_id, None, POOL)
    await execute(graph, ctx, record, lambda run, node: None)
    assert record.status == "succeeded", {n: r.error for n, r in record.nodes.items()}
    config = AnalyzerConfig(name="emotion", params={"smoothing": 0})
    analyzer = EmotionAnalyzer(config, StreamContext("cam", models))
    direct = analyzer.analyze(picture, frame)
    assert direct["face_detected"] and direct["dominant_emotion"] == "happy"
    assert record.nodes["emotion"].output == direct
