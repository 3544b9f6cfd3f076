"""Near-duplicate clips: a clip whose every sampled frame looks like a frame of the last clip
the VLM saw is skipped, with no model: frames are compared as small blurred grey images, and
the measure is the share of cells that changed by more than sensor noise. A share, not a mean
difference, so a person walking into a corner of the picture counts as fully as a light
going off: the mean would dilute a small change over the whole frame."""

from __future__ import annotations

import time

import cv2
import numpy as np

from vlm_monitor.clips.types import FrameData

GRID = (64, 36)  # cells; 16:9, as analysis frames are
NOISE_LEVEL = 24  # grey levels a cell may move by without having changed (noise, JPEG)


def signature(frame: np.ndarray) -> np.ndarray:
    small = cv2.resize(frame, GRID, interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
    return cv2.GaussianBlur(grey, (3, 3), 0).astype(np.int16)


def changed_share(a: np.ndarray, b: np.ndarray) -> float:
    """Share of cells (0..1) that differ by more than noise."""
    return float(np.mean(np.abs(a - b) > NOISE_LEVEL))


class DuplicateFilter:
    """Per stream, on the writer thread. The reference is the last frame of the last clip the
    VLM saw: the state its answer ended on. Not any of that clip's frames: after someone came
    in mid-clip, the picture without them would match the clip's early frames, and their
    leaving would be skipped. ``threshold``: a clip is a duplicate when none of its frames has
    more than this share of cells changed from the reference. ``max_skip_s``: even a still
    scene is analysed again after this long."""

    def __init__(self, threshold: float, max_skip_s: float) -> None:
        self.threshold, self.max_skip_s = threshold, max_skip_s
        self._reference: np.ndarray | None = None
        self._analysed_at = 0.0

    def difference(self, frames: list[FrameData]) -> float:
        """The most any frame of the clip differs from the reference (0..1)."""
        if self._reference is None:
            return 1.0
        reference = self._reference
        return max(changed_share(signature(f.frame), reference) for f in frames)

    def forget(self) -> None:
        """The last clip never reached the VLM (a budget refused it): compare the next one
        with nothing, so a change it carried is not lost as a duplicate of itself. Called
        from an inference thread: one attribute store, read whole by the writer."""
        self._reference = None

    def is_duplicate(self, frames: list[FrameData]) -> bool:
        """False also makes the clip the new reference (it goes to the VLM)."""
        now = time.monotonic()
        if (
            self._reference is not None
            and now - self._analysed_at < self.max_skip_s
            and self.difference(frames) <= self.threshold
        ):
            return True
        self._reference = signature(frames[-1].frame)
        self._analysed_at = now
        return False
