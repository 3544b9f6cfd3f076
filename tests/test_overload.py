"""Graceful overload: when the machine cannot keep up, every analyzer sheds the same share of
its rate (heart rate never below what its band needs), streams say they are degraded and why,
and new streams are refused before the running ones break."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from vlm_monitor.analyzers.overload import PROBE_AFTER, WARM_S, LoadGovernor
from vlm_monitor.analyzers.rppg import MIN_RATE_HZ, HeartRateEstimator
from vlm_monitor.config.vlm import OverloadConfig
from vlm_monitor.testing import CameraProcess, ServerProcess, wait_until
from vlm_monitor.types import CapacityError

SECONDS = itertools.count()  # the governor's clock in the scripted tests: 1 s per look


class ScriptedRunner:
    """An analyzer's counters as the governor reads them, advanced by the test: each period
    it wants ``target_fps * share`` frames and takes ``kept`` of them."""

    def __init__(self, stream_id: str, name: str, target_fps: float) -> None:
        self.stream_id, self.name, self.target_fps = stream_id, name, target_fps
        self.fps = target_fps
        self.taken = self.lost = 0
        self.busy_s = 0.0

    def counters(self) -> tuple[int, int, float]:
        return self.taken, self.lost, self.busy_s

    def shed(self, fps: float) -> None:
        self.fps = fps

    def period(self, kept: float, busy_s: float, seconds: float = 1.0) -> None:
        wanted = round(self.fps * seconds)
        self.taken += round(wanted * kept)
        self.lost += wanted - round(wanted * kept)
        self.busy_s += busy_s


def governor(**overrides: object) -> LoadGovernor:
    return LoadGovernor(OverloadConfig.model_validate({"period_s": 1, **overrides}), threads=2)


def first_look(gov: LoadGovernor, runners: list[ScriptedRunner]) -> None:
    """The governor learns the runners' counters, and they pass their first seconds (not
    counted) without a frame wanted."""
    gov.measure(runners, next(SECONDS))
    for _ in range(math.ceil(WARM_S)):
        next(SECONDS)
    gov.measure(runners, next(SECONDS))


def test_overload_sheds_every_analyzer_by_the_same_share_and_heart_rate_keeps_its_floor() -> None:
    gov = governor(min_share=0.3)
    runners = [
        r
        for sid in ("a", "b", "c")
        for r in (
            ScriptedRunner(sid, "emotion", 5),
            ScriptedRunner(sid, "attention", 5),
            ScriptedRunner(sid, "heart_rate", 15),
        )
    ]
    first_look(gov, runners)
    for r in runners:
        r.period(kept=0.6, busy_s=0.7)  # 2 threads fully busy, 40 % of frames lost
    gov.measure(runners, next(SECONDS))
    assert gov.share == pytest.approx(0.6 * 0.95, abs=0.01)
    by_name = {(r.stream_id, r.name): r.fps for r in runners}
    # Even: every stream's emotion and attention at the same shed rate.
    for name, target in (("emotion", 5), ("attention", 5), ("heart_rate", 15)):
        assert [by_name[(s, name)] for s in "abc"] == pytest.approx([target * gov.share] * 3)
    # Deeper overload: heart rate stops at the rate its band needs, the others shed on.
    for _ in range(5):
        for r in runners:
            r.period(kept=0.5, busy_s=0.7)
        gov.measure(runners, next(SECONDS))
    assert gov.share == pytest.approx(0.3)
    for r in runners:
        expected = MIN_RATE_HZ if r.name == "heart_rate" else r.target_fps * 0.3
        assert r.fps == pytest.approx(expected)
    degraded = gov.degraded("a")
    assert degraded is not None and degraded["reason"] == "overload"
    assert "30%" in degraded["detail"]


def test_rates_come_back_when_there_is_room_and_new_streams_are_refused_at_the_floor() -> None:
    gov = governor(min_share=0.5)
    runner = ScriptedRunner("a", "emotion", 10)
    first_look(gov, [runner])
    while gov.share > 0.5:
        runner.period(kept=0.5, busy_s=2.0)
        gov.measure([runner], next(SECONDS))
    with pytest.raises(CapacityError, match=r"at capacity.*min_share"):
        gov.admit("new")
    assert gov.status()["refused"] == 1
    for _ in range(10):  # load gone: keeps every frame, threads half idle
        runner.period(kept=1.0, busy_s=0.5)
        gov.measure([runner], next(SECONDS))
    assert gov.share == 1.0 and runner.fps == 10
    assert gov.degraded("a") is None
    gov.admit("new")  # room again


def test_one_slow_analyzer_degrades_only_its_stream() -> None:
    gov = governor()
    slow, fine = ScriptedRunner("a", "ocr", 10), ScriptedRunner("b", "emotion", 5)
    first_look(gov, [slow, fine])
    slow.period(kept=0.3, busy_s=1.0)  # one thread of two: the machine has room
    fine.period(kept=1.0, busy_s=0.05)
    gov.measure([slow, fine], next(SECONDS))
    assert gov.share == 1.0 and fine.fps == 5
    degraded = gov.degraded("a")
    assert degraded is not None and degraded["reason"] == "slow_analyzer"
    assert "ocr loses 70%" in degraded["detail"]
    assert gov.degraded("b") is None


def test_admit_refuse_refuses_as_soon_as_analyzers_shed() -> None:
    gov = governor(admit="refuse", min_share=0.2)
    runner = ScriptedRunner("a", "emotion", 10)
    first_look(gov, [runner])
    runner.period(kept=0.8, busy_s=2.0)
    gov.measure([runner], next(SECONDS))
    assert 0.2 < gov.share < 1
    with pytest.raises(CapacityError, match="admit is refuse"):
        gov.admit("new")


def test_heart_rate_says_why_when_its_samples_are_too_few() -> None:
    est = HeartRateEstimator(window_s=10, update_s=1)
    readings = []
    for i in range(80):  # 5 frames/s of a 72 bpm pulse
        ts = i / 5
        level = 120 + 2 * math.sin(2 * math.pi * 1.2 * ts)
        reading = est.add(ts, np.array([level, level, level]))
        if reading is not None:
            readings.append(reading)
    last = readings[-1]
    assert last.bpm is None and last.window_s >= 9
    assert last.reason is not None and "5.0 frames/s analysed" in last.reason


def test_an_overloaded_server_sheds_says_so_refuses_new_streams_and_recovers(
    tmp_path: Path,
) -> None:
    """OCR at 20 fps on one analyzer thread cannot keep up on any machine."""
    camera = CameraProcess(tmp_path, fps=20, size="640x360")
    config = {
        "analysis": {"threads": 1, "overload": {"period_s": 0.5, "min_share": 0.6}},
        "streams": [{"id": "a", "url": camera.url, "analyzers": [{"name": "ocr", "fps": 20}]}],
    }
    server = ServerProcess(tmp_path, config)
    try:
        with server.client() as http:

            def degraded() -> dict | None:
                return http.get("/api/streams/a").json()["degraded"]

            def shed() -> dict | None:
                why = degraded()
                return why if why is not None and why["reason"] == "overload" else None

            assert wait_until(shed, 30, what="stream degraded by overload")["share"] <= 0.9
            wait_until(lambda: http.get("/api/analyzers").json()["overload"]["share"] <= 0.6, 30)
            ocr = http.get("/api/streams/a").json()["analyzers"]["ocr"]
            assert ocr["fps_running"] == pytest.approx(12, abs=0.1) and ocr["fps_target"] == 20

            metrics = http.get("/metrics").text
            assert 'vlm_stream_degraded{reason="overload",stream="a"} 1.0' in metrics
            assert "vlm_analysis_rate_share 0.6" in metrics

            wanted = {"id": "b", "url": camera.url, "analyzers": ["emotion"]}
            refused = http.post("/api/streams", json=wanted)
            assert refused.status_code == 503, refused.text
            assert "at capacity" in refused.json()["error"]
            assert "b" not in [s["id"] for s in http.get("/api/streams").json()]
            assert "vlm_analysis_refused_streams_total 1.0" in http.get("/metrics").text
            # A stream without analyzers costs the analyzers nothing: still welcome.
            plain = http.post("/api/streams", json={"id": "c", "url": camera.url})
            assert plain.status_code == 201, plain.text

            slower = http.put("/api/streams/a/analyzers", json={"analyzers": [
                {"name": "ocr", "fps": 0.5}]})  # fmt: skip
            assert slower.status_code == 200, slower.text
            wait_until(lambda: degraded() is None, 30, what="full rates again")
            assert http.get("/api/analyzers").json()["overload"]["share"] == 1.0
    finally:
        server.stop()
        camera.stop()


def test_most_analyzers_losing_frames_is_overload_even_with_idle_threads() -> None:
    """Other work on the machine (or a starved event loop) keeps frames from the analyzers
    though their threads wait: when most of them lose frames, that is overload too."""
    gov = governor()
    runners = [ScriptedRunner(s, "emotion", 5) for s in "abc"]
    first_look(gov, runners)
    for r in runners:
        r.period(kept=0.5, busy_s=0.1)
    gov.measure(runners, next(SECONDS))
    assert gov.share < 1
    degraded = gov.degraded("a")
    assert degraded is not None and degraded["reason"] == "overload"


def test_analyzers_restarted_under_the_same_name_count_from_zero() -> None:
    """Analyzers put again on a stream start new counters: not a negative period."""
    gov = governor()
    old = ScriptedRunner("a", "emotion", 5)
    first_look(gov, [old])
    old.period(kept=1.0, busy_s=5.0, seconds=100)
    gov.measure([old], next(SECONDS))
    new = ScriptedRunner("a", "emotion", 5)
    first_look(gov, [new])  # its counters are below the old one's
    assert gov.late == 0 and gov.busy == 0 and gov.share == 1
    new.period(kept=0.5, busy_s=1.9)
    gov.measure([new], next(SECONDS))
    assert gov.late == pytest.approx(0.5, abs=0.1) and gov.busy == pytest.approx(0.95)
    assert gov.share < 1


def test_frames_lost_while_analyzers_start_are_not_overload() -> None:
    """Loading models and the first frames of many cameras at once lose frames once."""
    gov = governor()
    runners = [ScriptedRunner(s, "emotion", 5) for s in "abc"]
    gov.measure(runners, next(SECONDS))
    for _ in range(4):  # seconds, all within their warm-up
        for r in runners:
            r.period(kept=0.3, busy_s=0.7)
        gov.measure(runners, next(SECONDS))
    assert gov.share == 1 and gov.degraded("a") is None
    for r in runners:  # then they keep up
        r.period(kept=1.0, busy_s=0.2)
    gov.measure(runners, next(SECONDS))
    assert gov.share == 1 and gov.late == 0


def test_cores_full_of_other_work_is_overload_and_rates_try_up_only_after_a_quiet_while() -> None:
    """Decoding (or analyzer processes) fill the cores while the analyzer threads look idle:
    frames lost then are overload; rates rise again only after a while without a loss."""
    gov = LoadGovernor(OverloadConfig.model_validate({"period_s": 1}), threads=2, cores=2)
    runners = [
        ScriptedRunner(s, name, fps)
        for s in "abc"
        for name, fps in (("emotion", 5), ("attention", 5), ("heart_rate", 15))
    ]
    cpu = 0.0
    gov.measure(runners, next(SECONDS), {1: cpu})
    for _ in range(math.ceil(WARM_S) + 1):
        next(SECONDS)
    cpu += 2 * (math.ceil(WARM_S) + 1) * 0.5
    gov.measure(runners, next(SECONDS), {1: cpu})
    assert gov.share == 1 and gov.cpu == pytest.approx(0.5, abs=0.1)
    for r in runners:  # heart rate alone loses frames; the threads are not busy
        r.period(kept=0.8 if r.name == "heart_rate" else 1.0, busy_s=0.1)
    cpu += 2 * 0.97
    gov.measure(runners, next(SECONDS), {1: cpu})
    assert gov.cpu == pytest.approx(0.97) and gov.share < 1
    shed = gov.share
    for _ in range(PROBE_AFTER - 1):  # nothing lost at the shed rates, the cores still full
        for r in runners:
            r.period(kept=1.0, busy_s=0.1)
        cpu += 2 * 0.95
        gov.measure(runners, next(SECONDS), {1: cpu})
        assert gov.share == shed
    assert gov.status()["cpu"] == pytest.approx(0.95)
    for r in runners:  # long enough without a loss: a step up is tried
        r.period(kept=1.0, busy_s=0.1)
    cpu += 2 * 0.95
    gov.measure(runners, next(SECONDS), {1: cpu})
    assert gov.share == pytest.approx(min(1.0, shed * 1.1))


def test_a_restarted_analyzer_process_does_not_hide_the_cores_in_use() -> None:
    """CPU is counted per process: one that restarted (a new pid, its counter from zero)
    neither cancels the others' time nor counts what it had before."""
    gov = LoadGovernor(OverloadConfig.model_validate({"period_s": 1}), threads=2, cores=2)
    gov.measure([], next(SECONDS), {1: 10.0, 2: 50.0, 3: 50.0})
    gov.measure([], next(SECONDS), {1: 10.6, 2: 50.7, 4: 0.2})  # process 3 became 4
    assert gov.cpu == pytest.approx((0.6 + 0.7) / 2)
