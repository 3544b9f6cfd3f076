"""Clip sampling, MP4 writing and the processor's queue policies."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlm_monitor.clips.processor import AsyncVideoProcessor
from vlm_monitor.clips.sampling import MotionSampling, TimeSampling
from vlm_monitor.clips.store import ClipStore
from vlm_monitor.clips.types import FrameData
from vlm_monitor.config import ClipsConfig
from vlm_monitor.vlm.base import ProviderError, VlmAnswer, VlmRequest

PIX = np.zeros((36, 64, 3), np.uint8)


def frames_at(times: list[float]) -> list[FrameData]:
    return [FrameData(PIX, 1000 + t, t, i) for i, t in enumerate(sorted(times))]


times_lists = st.lists(st.floats(0, 100, allow_nan=False), min_size=0, max_size=60)


@settings(max_examples=200, deadline=None)
@given(times=times_lists, target=st.integers(0, 20))
def test_time_sampling_properties(times: list[float], target: int) -> None:
    frames = frames_at(times)
    out = TimeSampling().sample_frames(frames, target)
    assert len(out) == min(target, len(frames))
    numbers = [f.frame_number for f in out]
    assert numbers == sorted(set(numbers))  # sorted, unique
    if out:
        assert frames[0].relative_timestamp <= out[0].relative_timestamp
        assert out[-1].relative_timestamp <= frames[-1].relative_timestamp


@settings(max_examples=100, deadline=None)
@given(times=times_lists, target=st.integers(0, 20), seed=st.integers(0, 1000))
def test_motion_sampling_properties(times: list[float], target: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    frames = [
        FrameData(rng.integers(0, 255, (36, 64, 3), dtype=np.uint8), t, t, i)
        for i, t in enumerate(sorted(times))
    ]
    out = MotionSampling().sample_frames(frames, target)
    assert len(out) == min(target, len(frames))
    numbers = [f.frame_number for f in out]
    assert numbers == sorted(set(numbers))


def test_time_sampling_spans_the_buffer_evenly() -> None:
    frames = frames_at([i / 5 for i in range(51)])  # 10 s at 5 fps
    out = TimeSampling().sample_frames(frames, 6)
    assert [f.relative_timestamp for f in out] == pytest.approx([0, 2, 4, 6, 8, 10])
    zero_span = frames_at([3.0] * 10)
    assert len(TimeSampling().sample_frames(zero_span, 4)) == 4


def test_motion_sampling_follows_change() -> None:
    still = [FrameData(PIX, t, t, i) for i, t in enumerate(range(20))]
    moving = [
        FrameData(np.full((36, 64, 3), (i * 37) % 255, np.uint8), 20 + i, 20 + i, 20 + i)
        for i in range(20)
    ]
    out = MotionSampling(floor=0.1).sample_frames(still + moving, 8)
    assert sum(f.frame_number >= 20 for f in out) >= 6  # most samples where things change


def test_mp4_is_readable_with_expected_frames_and_duration(tmp_path: Path) -> None:
    store = ClipStore(tmp_path, min_free_mb=0)
    frames = [
        FrameData(np.full((360, 640, 3), i * 20, np.uint8), i * 1.25, i * 1.25, i) for i in range(9)
    ]  # 10 s span, 9 frames
    clip_id, path = store.write(frames, fps=8 / 10)
    assert path.suffix == ".mp4" and not list(tmp_path.glob("*.part"))
    with av.open(str(path)) as c:
        decoded = list(c.decode(video=0))
        stream = c.streams.video[0]
        assert len(decoded) == 9
        assert (stream.width, stream.height) == (640, 360)
        duration = float(stream.duration * stream.time_base)
        assert 10.0 <= duration <= 11.3  # 9 frames at 0.8 fps
    assert store.path_of(clip_id) == path


def test_retention_by_size_and_disk_check(tmp_path: Path) -> None:
    store = ClipStore(tmp_path, min_free_mb=0, max_total_mb=0.02)
    frames = [
        FrameData(np.random.default_rng(i).integers(0, 255, (360, 640, 3), dtype=np.uint8), i, i, i)
        for i in range(3)
    ]
    paths = [store.write(frames, 1.0)[1] for _ in range(3)]
    assert not paths[0].exists()  # over budget: the oldest went
    full = ClipStore(tmp_path / "full", min_free_mb=1e12)
    with pytest.raises(OSError, match="free"):
        full.write(frames, 1.0)


class SlowProvider:
    def __init__(self, delay: float, fail: bool = False) -> None:
        self.delay, self.fail, self.calls = delay, fail, 0

    def __call__(self, request: VlmRequest) -> tuple[str, VlmAnswer]:
        self.calls += 1
        time.sleep(self.delay)
        if self.fail:
            raise ProviderError("boom", retryable=True)
        return "fake", VlmAnswer(f"{len(request.frames)} frames", model="m", tokens=7)


def make(tmp_path: Path, analyze, **cfg) -> AsyncVideoProcessor:
    config = ClipsConfig(**{"clip_seconds": 1.0, "frames_per_clip": 4, "min_free_mb": 0, **cfg})
    return AsyncVideoProcessor("s", config, ClipStore(tmp_path, min_free_mb=0), analyze)


def feed(proc: AsyncVideoProcessor, seconds: float, fps: float, start_seq: int = 0) -> None:
    t0 = time.time()
    for i in range(int(seconds * fps)):
        proc.add_frame(np.full((90, 160, 3), i % 255, np.uint8), t0 + i / fps, start_seq + i)
        time.sleep(1 / fps)


def test_frame_queue_drops_new_frames_when_full(tmp_path: Path) -> None:
    proc = make(tmp_path, SlowProvider(0))  # not started: nobody drains the frame queue
    t0 = time.time()
    accepted = [proc.add_frame(PIX, t0 + i, i) for i in range(130)]
    assert accepted == [True] * 100 + [False] * 30
    assert proc.stats["frames_dropped"] == 30
    kept = [proc.frame_queue.get_nowait().frame_number for _ in range(100)]
    assert kept == list(range(100))  # the old ones stayed, the new ones went


def test_pipeline_produces_results_and_stops_clean(tmp_path: Path) -> None:
    got = []
    proc = make(tmp_path, SlowProvider(0.05), concurrency=2)
    proc._on_result = got.append
    before = {t.name for t in threading.enumerate()}
    proc.start()
    feed(proc, 3.5, 20)
    deadline = time.time() + 5
    while len(got) < 3 and time.time() < deadline:
        time.sleep(0.05)
    proc.stop()
    assert len(got) >= 3
    r = got[0]
    assert r.error is None and r.result == "4 frames" and r.provider == "fake" and r.tokens == 7
    assert r.video_info.frame_count == 4 and Path(r.video_path).exists()
    assert r.video_info.original_frame_range[1] > r.video_info.original_frame_range[0]
    assert r.inference_end_time >= r.inference_start_time and r.lag_s >= 0
    assert {t.name for t in threading.enumerate()} - before == set()
    assert not list(tmp_path.glob("*.part"))
    state = proc.dump_state()
    assert state["stop_event_set"] and state["statistics"]["videos_created"] >= 3


def test_video_queue_backpressure_and_stale_drop(tmp_path: Path) -> None:
    slow = SlowProvider(1.5)
    proc = make(tmp_path, slow, max_in_flight=1, deadline_s=0.8)
    started = time.monotonic()
    proc.start()
    feed(proc, 6, 20)
    proc.stop(timeout=5)
    elapsed = time.monotonic() - started
    stats = proc.get_statistics()
    # one call at a time, 1.5 s each: most clips could not run; the queue held at most one,
    # and clips that waited past the deadline were dropped as stale, files deleted
    assert slow.calls <= elapsed / 1.5 + 1
    assert slow.calls < stats["videos_created"]
    assert stats["clips_dropped_stale"] >= 1
    assert (
        slow.calls + stats["clips_dropped_stale"] + stats["clips_dropped_stopped"]
        == stats["videos_created"]
    )  # every clip accounted for
    results = []
    while (r := proc.get_result(timeout=0)) is not None:
        results.append(r)
    kept = {r.video_path for r in results}
    assert {str(p) for p in tmp_path.glob("*.mp4")} == kept


def test_latest_wins_skips_to_newest_clip(tmp_path: Path) -> None:
    slow = SlowProvider(2.5)
    proc = make(tmp_path, slow, max_in_flight=5, stale_policy="latest_wins")
    proc.start()
    feed(proc, 6, 20)
    time.sleep(2.5)
    proc.stop(timeout=5)
    stats = proc.get_statistics()
    assert stats["clips_dropped_stale"] >= 1
    assert (
        slow.calls + stats["clips_dropped_stale"] + stats["clips_dropped_stopped"]
        == stats["videos_created"]
    )
    assert slow.calls < stats["videos_created"] - 1


def test_result_queue_overwrites_oldest(tmp_path: Path) -> None:
    proc = make(tmp_path, SlowProvider(0))
    for i in range(25):
        proc._deliver(type("R", (), {"n": i})())  # type: ignore[arg-type]
    assert proc.stats["results_overwritten"] == 5
    assert [proc.get_result(0).n for _ in range(20)] == list(range(5, 25))  # type: ignore[union-attr]
    assert proc.get_result(timeout=0) is None


def test_provider_errors_are_results_not_crashes(tmp_path: Path) -> None:
    got = []
    proc = make(tmp_path, SlowProvider(0, fail=True))
    proc._on_result = got.append
    proc.start()
    feed(proc, 2.5, 20)
    time.sleep(0.5)
    proc.stop()
    assert got and all(r.error == "boom" and r.result == "" for r in got)


def test_motion_gate_skips_still_clips(tmp_path: Path) -> None:
    proc = make(tmp_path, SlowProvider(0), min_motion=5.0)
    proc.start()
    t0 = time.time()
    for i in range(50):
        proc.add_frame(PIX, t0 + i / 20, i)
    time.sleep(1.0)
    proc.stop()
    assert proc.stats["clips_gated"] >= 2 and proc.stats["videos_created"] == 0


def test_overlap_and_custom_strategy(tmp_path: Path) -> None:
    class FirstN:
        name = "first-n"

        def sample_frames(self, frames: list[FrameData], target_count: int) -> list[FrameData]:
            return frames[:target_count]

    got = []
    proc = make(tmp_path, SlowProvider(0), clip_seconds=1.0, overlap_s=0.5)
    proc._on_result = got.append
    proc.set_sampling_strategy(FirstN())
    proc.start()
    feed(proc, 3.2, 20)
    time.sleep(0.3)
    proc.stop()
    assert len(got) >= 3
    ranges = [r.video_info.original_frame_range for r in got]
    assert all(b[0] < a[1] for a, b in itertools.pairwise(ranges))  # overlapping
    assert all(r.video_info.sampling_info["strategy"] == "first-n" for r in got)
    first = got[0].video_info.sampling_info["frame_numbers"]
    assert first == list(range(ranges[0][0], ranges[0][0] + 4))


def test_store_migrates_an_old_database(tmp_path: Path) -> None:
    import sqlite3

    from vlm_monitor.storage.db import MIGRATIONS, Store

    old = sqlite3.connect(tmp_path / "vlm-monitor.db")  # what the first release created
    old.execute(
        "CREATE TABLE streams (id TEXT PRIMARY KEY, config TEXT NOT NULL, created_at REAL NOT NULL)"
    )
    old.execute("INSERT INTO streams VALUES ('kept', '{\"id\": \"kept\"}', 1.0)")
    old.commit()
    old.close()
    store = Store(tmp_path)
    assert store.schema_version == len(MIGRATIONS)
    row_id = store.add_result_sync({"stream": "kept", "video_info": {"clip_id": "c1"}})
    import asyncio

    assert asyncio.run(store.load_streams()) == [{"id": "kept"}]
    assert asyncio.run(store.result(row_id))["id"] == row_id
    store.close()
    assert Store(tmp_path).schema_version == len(MIGRATIONS)  # re-opening migrates nothing


def test_sampling_uses_presentation_time_for_bursts(tmp_path: Path) -> None:
    proc = make(tmp_path, SlowProvider(0))
    t0 = time.time()
    # 30 frames shot 0.1 s apart arrive in a 30 ms burst (a decoder catching up)
    for i in range(30):
        proc.add_frame(PIX, t0 + i * 0.001, i, pts=100.0 + i * 0.1)
    rel = [proc.frame_queue.get_nowait().relative_timestamp for _ in range(30)]
    assert rel == pytest.approx([i * 0.1 for i in range(30)])
    proc.add_frame(PIX, t0 + 0.05, 30, pts=3.0)  # the source restarted its clock
    proc.add_frame(PIX, t0 + 0.06, 31, pts=3.1)
    after = [proc.frame_queue.get_nowait().relative_timestamp for _ in range(2)]
    assert after == pytest.approx([2.9, 3.0])  # re-anchored, time never runs backwards
