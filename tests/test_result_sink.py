"""The result sink on its own: every kind of result is stored, pushed once (or, for flow
outputs, deliberately not), stamped with the stream's session and counted; producers in
threads reach the event loop; a failing listener costs nothing."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from vlm_monitor.broadcast.bus import EventBus, EventQueue
from vlm_monitor.config import AnalysisConfig
from vlm_monitor.results import ResultSink, SessionMap
from vlm_monitor.storage.db import Store
from vlm_monitor.storage.writer import AnalysisWriter
from vlm_monitor.testing import wait_until
from vlm_monitor.types import AnalysisResult

STREAM = "exam-7-user-42"  # the default session pattern names its session "7:42"
SESSION = "7:42"


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.bus = EventBus()
        self.store = Store(tmp_path)
        self.sessions = SessionMap(self.store, AnalysisConfig().session_pattern)
        self.writer = AnalysisWriter(self.store, keep=1000)
        self.sink = ResultSink(self.bus, self.store, self.sessions, self.writer)
        self.heard: list[tuple[str, dict[str, Any]]] = []
        self.sink.listen(lambda kind, origin, doc: self.heard.append((kind, doc)))
        self.events: EventQueue = self.bus.listen()[0]

    async def pushed(self, settle_s: float = 0.2) -> list[dict[str, Any]]:
        """Every event pushed so far (events from threads arrive through the loop)."""
        await asyncio.sleep(settle_s)
        out = []
        while not self.events.queue.empty():
            out.append(self.events.queue.get_nowait())
        return out

    def close(self) -> None:
        self.writer.close()
        self.store.close()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    rig = Rig(tmp_path)
    loop = asyncio.get_running_loop()
    rig.bus.bind(loop)
    rig.sink.bind(loop)
    yield rig
    rig.close()


def clip_doc(stream: str = STREAM) -> dict[str, Any]:
    now = time.time()
    return {
        "stream": stream,
        "result": "a person at a desk",
        "error": None,
        "provider": "fake",
        "video_info": {"clip_id": "c1", "end_timestamp": now - 3.0},
        "inference_start_time": now - 1.0,
        "inference_end_time": now,
        "inference_duration": 1.0,
    }


async def test_analysis_is_stamped_pushed_once_stored_and_counted(rig: Rig) -> None:
    rig.sink.analysis(AnalysisResult(STREAM, "motion", 5, time.time(), 0.02, {"level": 0.3}))
    events = await rig.pushed()
    assert [e["type"] for e in events] == ["analysis"]
    assert events[0]["stream"] == STREAM and events[0]["session_id"] == SESSION
    assert events[0]["result"] == {"level": 0.3}
    await asyncio.to_thread(rig.writer.close)  # flushes the batch to SQLite
    stored = await rig.store.analyses(STREAM, "motion", 10)
    assert len(stored) == 1 and stored[0]["session_id"] == SESSION
    assert rig.sink.counts() == {("analysis", "local"): 1}
    assert [kind for kind, _ in rig.heard] == ["analysis"]


async def test_a_workers_analysis_is_counted_as_such(rig: Rig) -> None:
    reading = AnalysisResult("cam1", "motion", 1, time.time(), 0.1, {"level": 0.0}, origin="worker")
    rig.sink.analysis(reading)
    events = await rig.pushed()
    assert len(events) == 1 and events[0]["session_id"] is None  # no session for "cam1"
    assert rig.sink.counts() == {("analysis", "worker"): 1}


async def test_a_clip_from_a_thread_is_stored_then_pushed_once_with_its_id(rig: Rig) -> None:
    doc = await asyncio.to_thread(rig.sink.clip, clip_doc())  # the inference thread's call
    events = await rig.pushed()
    assert [e["type"] for e in events] == ["result"]
    assert events[0]["id"] == doc["id"] and doc["id"] >= 1
    assert events[0]["session_id"] == SESSION
    stored = await rig.store.result(doc["id"])
    assert stored is not None and stored["session_id"] == SESSION
    assert stored["result"] == "a person at a desk"
    assert rig.sink.counts() == {("clip", "local"): 1}


async def test_a_clip_posted_by_a_worker(rig: Rig) -> None:
    await asyncio.to_thread(rig.sink.clip, clip_doc("cam2"), "worker")
    assert len(await rig.pushed()) == 1
    assert rig.sink.counts() == {("clip", "worker"): 1}
    assert (await rig.store.results("cam2", 10))[0]["session_id"] is None


async def test_a_clip_that_cannot_be_stored_is_still_pushed_and_counted_as_unstored(
    rig: Rig,
) -> None:
    rig.store.close()  # SQLite refuses every write from now on
    await asyncio.to_thread(rig.sink.clip, clip_doc())
    events = await rig.pushed()
    assert [e["type"] for e in events] == ["result"]
    assert rig.sink.failures() == {"clip": 1}
    rig.store = Store(rig.store.path.parent)  # so the fixture can close it again


async def test_a_flow_output_is_stored_not_pushed(rig: Rig) -> None:
    doc = {"stream": STREAM, "source": "flow", "flow": "f1", "data": {"x": 1}}
    row_id = await asyncio.to_thread(rig.sink.flow_output, doc)
    assert await rig.pushed() == []  # a "result" event would start clip-triggered flows
    stored = await rig.store.result(row_id)
    assert stored is not None and stored["session_id"] == SESSION and stored["flow"] == "f1"
    assert rig.sink.counts() == {("flow_output", "local"): 1}


async def test_an_alert_is_stored_and_pushed_once_with_its_id(rig: Rig) -> None:
    doc = {"flow": "f1", "stream": STREAM, "key": "k", "severity": "warning", "message": "m"}
    row_id = await asyncio.to_thread(rig.sink.alert, doc)
    events = await rig.pushed()
    assert [e["type"] for e in events] == ["alert"]
    assert events[0]["id"] == row_id == doc["id"] and events[0]["session_id"] == SESSION
    stored = await rig.store.alerts("f1", 10)
    assert [a["id"] for a in stored] == [row_id] and stored[0]["session_id"] == SESSION
    assert rig.sink.counts() == {("alert", "local"): 1}


async def test_an_alert_without_a_stream(rig: Rig) -> None:
    await asyncio.to_thread(rig.sink.alert, {"flow": "f2", "stream": None, "message": "m"})
    events = await rig.pushed()
    assert len(events) == 1 and events[0]["stream"] is None and events[0]["session_id"] is None


async def test_a_flow_event_is_pushed_once_not_stored(rig: Rig) -> None:
    doc = rig.sink.flow_event("door.open", "cam1", {"flow": "f1", "data": {}})
    events = await rig.pushed()
    assert [e["seq"] for e in events] == [doc["seq"]] and events[0]["type"] == "door.open"
    assert await rig.store.results(None, 10) == []
    assert rig.sink.counts() == {("flow_event", "local"): 1}


async def test_a_failing_listener_costs_neither_the_result_nor_the_other_listeners(
    rig: Rig,
) -> None:
    def broken(kind: str, origin: str, doc: dict[str, Any]) -> None:
        raise RuntimeError("listener bug")

    rig.sink._listeners.insert(0, broken)
    rig.sink.analysis(AnalysisResult("cam1", "motion", 1, time.time(), 0.01, {"level": 1.0}))
    assert len(await rig.pushed()) == 1
    assert [kind for kind, _ in rig.heard] == ["analysis"]


async def test_many_threads_count_every_result(rig: Rig) -> None:
    def produce() -> None:
        for i in range(200):
            reading = AnalysisResult("cam1", "motion", i, time.time(), 0.0, {"level": 0.0})
            rig.sink.analysis(reading)

    threads = [threading.Thread(target=produce) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert rig.sink.counts() == {("analysis", "local"): 800}
    assert len(await rig.pushed(0.5)) == 800  # each pushed once, through the loop


def test_metrics_expose_result_counts_and_latency_histograms(server) -> None:
    """A real server: motion readings and clips described by the local VLM reach /metrics
    as counts per kind and as histograms (buckets, sum, count)."""
    clips = {"clip_seconds": 1, "frames_per_clip": 2, "input_fps": 2, "provider": "offline",
             "min_free_mb": 0}  # fmt: skip
    srv = server(
        {"vlm": {"providers": [{"name": "offline", "kind": "local"}]},
         "streams": [{"id": "cam", "url": "synthetic://?fps=5&size=320x180",
                      "analyzers": ["motion"], "clips": clips}]}
    )  # fmt: skip
    with srv.client() as c:

        def scraped() -> str | None:
            text = c.get("/metrics").text
            return text if 'vlm_results_total{kind="clip",origin="local"}' in text else None

        text = wait_until(scraped, 30, what="a clip result counted")
    assert 'vlm_results_total{kind="analysis",origin="local"}' in text
    for histogram in (
        "vlm_analyzer_result_latency_seconds",
        "vlm_provider_call_seconds",
        "vlm_clip_result_lag_seconds",
    ):
        assert f"# TYPE {histogram} histogram" in text
        assert f"{histogram}_count" in text and f"{histogram}_sum" in text
    assert (
        'vlm_analyzer_result_latency_seconds_bucket{analyzer="motion",le="0.05",origin="local"}'
        in text
    )
    assert 'vlm_provider_call_seconds_bucket{le="+Inf",outcome="ok",provider="offline"}' in text
    assert 'vlm_clip_result_lag_seconds_bucket{le="600.0"}' in text
    # The names the dashboards already use are still there.
    assert 'vlm_analyzer_results_total{analyzer="motion",stream="cam"}' in text
    assert 'vlm_stream_live{stream="cam"} 1.0' in text
