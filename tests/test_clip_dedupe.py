"""Near-duplicate skip: a still scene makes few VLM calls, a real change always makes one."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from vlm_monitor.clips.dedupe import DuplicateFilter
from vlm_monitor.clips.processor import AsyncVideoProcessor
from vlm_monitor.clips.store import ClipStore
from vlm_monitor.clips.types import FrameData
from vlm_monitor.config import ClipsConfig
from vlm_monitor.metrics.clips import ClipCollector
from vlm_monitor.vlm.base import VlmAnswer, VlmRequest

ROOM = np.random.default_rng(7).integers(40, 200, (360, 640, 3), dtype=np.uint8)


def scene(rng: np.random.Generator, person_at: int | None = None) -> np.ndarray:
    """The room with sensor noise; a 40x90 px person (1.6 % of the picture) at x=person_at."""
    noise = rng.normal(0, 4, ROOM.shape)
    img = np.clip(ROOM + noise, 0, 255).astype(np.uint8)
    if person_at is not None:
        img[200:290, person_at : person_at + 40] = (30, 30, 160)
    return img


def clip(rng: np.random.Generator, person: list[int | None]) -> list[FrameData]:
    return [FrameData(scene(rng, p), float(i), float(i), i) for i, p in enumerate(person)]


def test_filter_skips_still_clips_and_never_a_change() -> None:
    rng = np.random.default_rng(1)
    f = DuplicateFilter(threshold=0.005, max_skip_s=600)
    assert not f.is_duplicate(clip(rng, [None] * 6))  # the first clip is always analysed
    assert all(f.is_duplicate(clip(rng, [None] * 6)) for _ in range(5))
    walk = [None, None, 20, None, None, None]  # someone crosses in one sampled frame only
    assert not f.is_duplicate(clip(rng, walk))
    assert f.is_duplicate(clip(rng, [None] * 6))  # like the frames around the crossing
    assert not f.is_duplicate(clip(rng, [560] * 6))  # a person stays, far right
    assert f.is_duplicate(clip(rng, [560] * 6))
    assert not f.is_duplicate(clip(rng, [None] * 6))  # and leaves: a change again


def test_a_still_scene_is_analysed_again_after_max_skip_s() -> None:
    rng = np.random.default_rng(2)
    first, second, third = (clip(rng, [None] * 4) for _ in range(3))  # built before the clock
    f = DuplicateFilter(threshold=0.005, max_skip_s=1.0)
    assert not f.is_duplicate(first)
    assert f.is_duplicate(second)
    time.sleep(1.05)
    assert not f.is_duplicate(third)


def test_a_change_skipped_for_the_budget_is_not_lost_as_a_duplicate() -> None:
    rng = np.random.default_rng(5)
    f = DuplicateFilter(threshold=0.005, max_skip_s=600)
    assert not f.is_duplicate(clip(rng, [None] * 4))
    assert not f.is_duplicate(clip(rng, [300] * 4))  # the change, but a budget refuses it
    f.forget()
    assert not f.is_duplicate(clip(rng, [300] * 4))  # so the same picture is asked again
    assert f.is_duplicate(clip(rng, [300] * 4))  # once answered, it is a duplicate again


def test_processor_calls_once_per_change_and_counts_the_skips(tmp_path: Path) -> None:
    calls: list[VlmRequest] = []

    def analyze(request: VlmRequest) -> tuple[str, VlmAnswer]:
        calls.append(request)
        return "fake", VlmAnswer(text="ok")

    config = ClipsConfig(
        clip_seconds=1.0, frames_per_clip=4, min_free_mb=0, dedupe={"enabled": True}
    )
    proc = AsyncVideoProcessor("cam", config, ClipStore(tmp_path, min_free_mb=0), analyze)
    proc.start()
    rng = np.random.default_rng(3)
    fps, clips, change_at = 8, 12, 6
    t0 = time.time()  # stamps fed faster than real time, clips are not stale yet
    for i in range((clips + 1) * fps):
        person = 300 if i >= change_at * fps else None  # the scripted change: it stays
        proc.add_frame(scene(rng, person), t0 + i / fps, i)
        time.sleep(0.004)
    deadline = time.time() + 10
    while not proc.frame_queue.empty() or len(calls) < 2:
        assert time.time() < deadline, proc.stats
        time.sleep(0.05)
    time.sleep(0.5)
    proc.stop()
    assert len(calls) == 2, proc.stats  # the first clip and the one where the person came
    assert calls[1].frames[-1][200:290, 300:340].mean() < 100  # that one shows the person
    stats = proc.get_statistics()
    assert stats["clips_skipped_duplicate"] == stats["skipped"]["duplicate"] >= clips - 4
    assert proc.stats["videos_created"] == 2  # nor was a file written for a skipped clip


def test_metrics_count_skipped_clips_by_reason() -> None:
    status = {"lag_s": 0.0, "skipped": {"duplicate": 10, "still": 2, "disk_full": 0}}
    registry = CollectorRegistry()
    registry.register(ClipCollector(lambda: ["cam"], lambda _sid: status, dict))
    text = generate_latest(registry).decode()
    assert 'vlm_clips_skipped_total{reason="duplicate",stream="cam"} 10.0' in text
    assert 'vlm_clips_skipped_total{reason="still",stream="cam"} 2.0' in text


def test_dedupe_is_off_unless_configured() -> None:
    assert not ClipsConfig().dedupe.enabled
    assert ClipsConfig.model_validate({"dedupe": {"enabled": True, "threshold": 0.02}}).dedupe
