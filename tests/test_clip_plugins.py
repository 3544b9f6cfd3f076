"""Plug-ins (sampling strategies, result post-processors, providers) written by users: whatever
they raise fails one clip, never the pipeline; records read like the original design's dicts."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vlm_monitor.api.results import CLIP_ID, ResultIn
from vlm_monitor.clips.processor import AsyncVideoProcessor
from vlm_monitor.clips.sampling import TimeSampling
from vlm_monitor.clips.store import ClipStore
from vlm_monitor.clips.types import FrameData, ResultData, VideoInfo
from vlm_monitor.config import ClipsConfig, VlmProviderConfig
from vlm_monitor.vlm.base import VlmAnswer, VlmRequest
from vlm_monitor.vlm.registry import ProviderSet


class Fatal(BaseException):
    """What a plug-in may raise that no ``except Exception`` catches: it ends the thread."""


@pytest.fixture
def providers() -> Iterator[ProviderSet]:
    providers = ProviderSet([VlmProviderConfig(name="offline", kind="local")])
    yield providers
    providers.close()


class Pipeline:
    def __init__(self, tmp_path: Path, analyze: Callable[[VlmRequest], tuple[str, VlmAnswer]]):
        config = ClipsConfig(clip_seconds=1.0, frames_per_clip=4, min_free_mb=0)
        self.results: list[ResultData] = []
        self.lock = threading.Lock()
        self.proc = AsyncVideoProcessor(
            "cam", config, ClipStore(tmp_path, min_free_mb=0), analyze, self._collect
        )

    def _collect(self, result: ResultData) -> None:
        with self.lock:
            self.results.append(result)

    def run_until(self, done: Callable[[list[ResultData]], bool], limit_s: float = 20) -> None:
        """Feeds frames 4x faster than real time (20 fps of media) until ``done``."""
        self.proc.start()
        try:
            t0, i = time.time(), 0
            deadline = time.monotonic() + limit_s
            while time.monotonic() < deadline:
                with self.lock:
                    if done(list(self.results)):
                        return
                pixels = np.full((90, 160, 3), (i * 7) % 255, np.uint8)
                self.proc.add_frame(pixels, t0 + i / 20, i)
                i += 1
                time.sleep(1 / 80)
            raise AssertionError(f"gave up; results so far: {[r.error for r in self.results]}")
        finally:
            self.stats = self.proc.get_statistics()
            self.proc.stop()


def ok(r: ResultData) -> bool:
    return r.error is None and r.video_info.frame_count == 4 and Path(r.video_path).is_file()


class FailsOnce:
    """Time sampling, except that call number ``on`` raises ``exc``."""

    name = "flaky"

    def __init__(self, exc: BaseException, on: int = 2) -> None:
        self.exc, self.on, self.calls = exc, on, 0

    def sample_frames(self, frames: list[FrameData], target_count: int) -> list[FrameData]:
        self.calls += 1
        if self.calls == self.on:
            raise self.exc
        return TimeSampling().sample_frames(frames, target_count)


@pytest.mark.parametrize(
    ("exc", "shown"),
    [
        (RuntimeError("codec table missing"), "RuntimeError: codec table missing"),
        (KeyError("relative_time"), "KeyError: 'relative_time'"),
    ],
)
def test_strategy_error_fails_only_its_clip(
    tmp_path: Path, providers: ProviderSet, exc: Exception, shown: str
) -> None:
    p = Pipeline(tmp_path, providers.analyzer(ClipsConfig(provider="offline")))
    p.proc.set_sampling_strategy(FailsOnce(exc))
    p.run_until(lambda rs: len(rs) >= 4)
    first, failed, *after = p.results
    assert ok(first) and first.provider == "offline" and first.result
    assert failed.error == f"sampling strategy 'flaky' raised {shown}"
    assert failed.result == "" and failed.video_path == "" and failed.video_info.frame_count == 0
    span = failed.video_info.original_frame_range
    assert first.video_info.original_frame_range[1] < span[0] < span[1]
    assert after and all(ok(r) and r.provider == "offline" for r in after)  # and on it goes
    assert p.stats["plugin_errors"] == 1
    assert p.stats["plugin_errors_by_stage"] == {"sampling": 1, "postprocess": 0, "provider": 0}
    assert p.stats["inference_errors"] == 0 and p.stats["thread_restarts"] == 0
    alive = p.stats["threads_alive"]
    assert set(alive) == {"clips-writer-cam", "clips-vlm-cam-0"} and all(alive.values())
    # stored and posted like any other error result
    doc = failed.to_json()
    assert CLIP_ID.fullmatch(doc["video_info"]["clip_id"])
    assert ResultIn.model_validate(doc).error == failed.error


def test_strategy_error_is_logged_with_traceback_once(
    tmp_path: Path, providers: ProviderSet, caplog: pytest.LogCaptureFixture
) -> None:
    p = Pipeline(tmp_path, providers.analyzer(ClipsConfig(provider="offline")))
    p.proc.set_sampling_strategy(FailsOnce(RuntimeError("boom")))
    with caplog.at_level("ERROR", logger="vlm_monitor.clips"):
        p.run_until(lambda rs: len(rs) >= 3)
    logged = [r for r in caplog.records if r.exc_info]
    assert len(logged) == 1 and logged[0].exc_info[0] is RuntimeError  # type: ignore[index]


def test_post_processor_raising_on_every_result(tmp_path: Path, providers: ProviderSet) -> None:
    class Broken:
        def process_result(self, text: str) -> dict[str, Any]:
            raise RuntimeError(f"cannot parse {len(text)} characters")

    p = Pipeline(tmp_path, providers.analyzer(ClipsConfig(provider="offline")))
    p.proc.set_result_processor(Broken())
    p.run_until(lambda rs: len(rs) >= 3)
    assert all(
        r.error is not None
        and r.error.startswith("result processor Broken raised RuntimeError: cannot parse")
        and r.result  # the provider's answer is kept beside the error
        and Path(r.video_path).is_file()
        for r in p.results
    )
    stats = p.stats
    assert stats["plugin_errors"] == stats["inference_errors"] == stats["inferences_completed"]
    assert stats["plugin_errors_by_stage"]["postprocess"] == stats["plugin_errors"] >= 3
    assert all(stats["threads_alive"].values()) and stats["thread_restarts"] == 0


def test_provider_exception_fails_the_clip(tmp_path: Path) -> None:
    calls = []

    def analyze(request: VlmRequest) -> tuple[str, VlmAnswer]:
        calls.append(request)
        if len(calls) == 1:
            raise AttributeError("'NoneType' object has no attribute 'choices'")
        return "home-made", VlmAnswer(f"{len(request.frames)} frames", model="m", tokens=3)

    p = Pipeline(tmp_path, analyze)
    p.run_until(lambda rs: len(rs) >= 3)
    failed, *after = p.results
    assert failed.error == (
        "VLM provider call raised AttributeError: 'NoneType' object has no attribute 'choices'"
    )
    assert all(ok(r) and r.result == "4 frames" for r in after)
    assert p.stats["plugin_errors_by_stage"]["provider"] == p.stats["plugin_errors"] == 1


def test_strategy_written_against_dicts(tmp_path: Path, providers: ProviderSet) -> None:
    class FirstNDicts:
        """The original design's shape: frames are dicts."""

        name = "first-n-dicts"

        def sample_frames(self, frames: list[Any], target_count: int) -> list[Any]:
            assert all("timestamp" in f and f.get("nope") is None for f in frames)
            chosen = [f for f in frames if f["relative_timestamp"] >= 0][:target_count]
            assert [f["frame_number"] for f in chosen] == sorted(f["frame_number"] for f in chosen)
            return chosen

    p = Pipeline(tmp_path, providers.analyzer(ClipsConfig(provider="offline")))
    p.proc.set_sampling_strategy(FirstNDicts())
    p.run_until(lambda rs: len(rs) >= 2)
    for r in p.results:
        assert ok(r) and r["error"] is None and r["provider"] == "offline"
        info = r["video_info"]
        assert info["clip_id"] and info["sampling_info"]["strategy"] == "first-n-dicts"
        first = info["original_frame_range"][0]
        assert info["sampling_info"]["frame_numbers"] == list(range(first, first + 4))
    assert p.stats["plugin_errors"] == 0


def test_records_read_like_dicts() -> None:
    frame = FrameData(np.zeros((2, 2, 3), np.uint8), 1000.5, 0.5, 7)
    assert frame["relative_timestamp"] == 0.5 and frame["frame_number"] == 7
    assert "timestamp" in frame and "pts" not in frame and 0 not in frame
    assert frame.get("frame_number") == 7 and frame.get("pts", -1) == -1
    original = ["frame", "timestamp", "relative_timestamp", "frame_number"]
    assert list(frame.keys()) == [*original, "boxes"]  # the original's first, in its order
    assert list(frame) == list(frame.keys()) and len(frame) == 5
    assert dict(frame)["timestamp"] == 1000.5 and dict(frame.items()) == {**frame}
    with pytest.raises(KeyError, match="pts"):
        frame["pts"]
    with pytest.raises(TypeError):
        frame["frame_number"] = 8  # type: ignore[index]
    info = VideoInfo("a.mp4", 1, 0.0, 0.0, 1.0, [0, 9], {"strategy": "time"}, clip_id="c1")
    assert info["clip_id"] == "c1" and info["sampling_info"]["strategy"] == "time"
    assert info.get("build_s") == 0.0 and "frames" in info
    # still dataclasses with slots
    assert dataclasses.is_dataclass(frame) and not hasattr(frame, "__dict__")
    assert dataclasses.asdict(info)["clip_id"] == "c1" and info.to_json()["clip_id"] == "c1"


@pytest.mark.parametrize("where", ["writer", "inference"])
def test_dead_thread_is_restarted(tmp_path: Path, providers: ProviderSet, where: str) -> None:
    class DiesOnce:
        def __init__(self) -> None:
            self.calls = 0

        def process_result(self, text: str) -> dict[str, Any]:
            self.calls += 1
            if self.calls == 2:
                raise Fatal("thread killer")
            return {"text": text}

    p = Pipeline(tmp_path, providers.analyzer(ClipsConfig(provider="offline")))
    if where == "writer":
        p.proc.set_sampling_strategy(FailsOnce(Fatal("thread killer")))
    else:
        p.proc.set_result_processor(DiesOnce())
    p.run_until(lambda rs: len(rs) >= 3)
    stats = p.stats
    assert stats["thread_restarts"] == 1
    assert all(stats["threads_alive"].values()) and len(stats["threads_alive"]) == 2
    assert all(ok(r) for r in p.results)  # the clip the thread died on is lost, nothing else
    assert stats["plugin_errors"] == 0  # not a plug-in error the pipeline could attribute
