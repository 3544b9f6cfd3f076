"""Which buffered frames go into a clip. Pure functions over FrameData lists.

Both strategies return frames sorted by time, without duplicates, at most ``target`` of them
(all of them when fewer are buffered), and always within the buffered span.
"""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np

from vlm_monitor.clips.types import FrameData


class SamplingStrategy(Protocol):
    """Returns records taken from ``frames`` (which also read as dicts, ``f['timestamp']``).
    Whatever it raises fails that clip only: an error result, counted in ``plugin_errors``."""

    name: str

    def sample_frames(self, frames: list[FrameData], target_count: int) -> list[FrameData]: ...


def _pick_nearest_unique(times: list[float], targets: list[float]) -> list[int]:
    """For each target time, the nearest not-yet-taken index (times are sorted)."""
    taken: set[int] = set()
    arr = np.asarray(times)
    for t in targets:
        order = np.argsort(np.abs(arr - t), kind="stable")
        for idx in order:
            if int(idx) not in taken:
                taken.add(int(idx))
                break
    return sorted(taken)


class TimeSampling:
    """The original clip processor's time-based sampling, without its duplicate frames: evenly
    spaced target times over the span (both ends included), each mapped to the nearest frame
    not already taken."""

    name = "time"

    def sample_frames(self, frames: list[FrameData], target_count: int) -> list[FrameData]:
        if target_count <= 0 or not frames:
            return []
        if len(frames) <= target_count:
            return list(frames)
        times = [f.relative_timestamp for f in frames]
        start, end = times[0], times[-1]
        if end <= start:  # zero span: take evenly spaced indices instead
            step = len(frames) / target_count
            return [frames[int(i * step)] for i in range(target_count)]
        targets = (
            [start + (end - start) * i / (target_count - 1) for i in range(target_count)]
            if target_count > 1
            else [start + (end - start) / 2]
        )
        return [frames[i] for i in _pick_nearest_unique(times, targets)]


def change_scores(frames: list[FrameData], size: tuple[int, int] = (64, 36)) -> list[float]:
    """Mean absolute grey-level change from the previous frame (0 for the first), 0..255."""
    scores = [0.0]
    prev: np.ndarray | None = None
    for f in frames:
        grey = cv2.cvtColor(
            cv2.resize(f.frame, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY
        ).astype(np.int16)
        if prev is not None:
            scores.append(float(np.abs(grey - prev).mean()))
        prev = grey
    return scores[: len(frames)]


class MotionSampling:
    """Scene-change weighted: frames are spread so each gets an equal share of the cumulative
    change (plus a floor so still scenes still sample evenly in time)."""

    name = "motion"

    def __init__(self, floor: float = 0.5) -> None:
        self.floor = floor  # change units added per frame, keeps still stretches represented

    def sample_frames(self, frames: list[FrameData], target_count: int) -> list[FrameData]:
        if target_count <= 0 or not frames:
            return []
        if len(frames) <= target_count:
            return list(frames)
        weights = np.asarray(change_scores(frames)) + self.floor
        cumulative = np.cumsum(weights)
        cumulative = (cumulative - cumulative[0]) / max(cumulative[-1] - cumulative[0], 1e-9)
        targets = list(np.linspace(0.0, 1.0, target_count))
        return [frames[i] for i in _pick_nearest_unique(list(cumulative), targets)]


STRATEGIES: dict[str, type[TimeSampling] | type[MotionSampling]] = {
    "time": TimeSampling,
    "motion": MotionSampling,
}
