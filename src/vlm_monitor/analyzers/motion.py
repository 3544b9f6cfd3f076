"""Motion: how much of the picture changed since the previous frame, and where (boxes).

Frame differencing on a small grey copy with a running background (exponential average), so
sensor noise and slow light changes do not count. Not thread-safe: one per stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from vlm_monitor.geometry import Placement

Box = tuple[int, int, int, int]  # x, y, width, height in the analysed image's pixels
MAX_BOXES = 16  # the largest changed regions reported; more is noise for a reader
_KERNEL = np.ones((3, 3), np.uint8)


@dataclass(frozen=True)
class MotionReading:
    level: float  # fraction of the picture that changed, 0..1
    boxes: list[Box] = field(default_factory=list)  # changed regions, largest first
    ts: float = 0.0


class MotionDetector:
    def __init__(
        self,
        threshold: int = 25,
        learning_rate: float = 0.05,
        min_area_fraction: float = 0.002,
        work_width: int = 320,
    ) -> None:
        self.threshold = threshold  # grey-level change that counts as motion
        self.learning_rate = learning_rate  # how fast the background follows the scene
        self.min_area_fraction = min_area_fraction  # smaller blobs are noise
        self.work_width = work_width
        self._background: np.ndarray | None = None

    def update(self, bgr: np.ndarray, ts: float = 0.0) -> MotionReading:
        w = bgr.shape[1]
        scale = self.work_width / w if w > self.work_width else 1.0
        small = (
            cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            if scale != 1.0
            else bgr
        )
        grey = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (5, 5), 0)
        grey_f = grey.astype(np.float32)
        if self._background is None or self._background.shape != grey_f.shape:
            self._background = grey_f
            return MotionReading(0.0, [], ts)
        diff = cv2.absdiff(grey_f, self._background)
        cv2.accumulateWeighted(grey_f, self._background, self.learning_rate)
        mask = cv2.dilate((diff > self.threshold).astype(np.uint8), _KERNEL, iterations=2)
        level = float(mask.mean())
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        min_area = self.min_area_fraction * mask.size
        boxes = []
        for contour in contours:
            if cv2.contourArea(contour) < min_area:
                continue
            x, y, bw, bh = cv2.boundingRect(contour)
            boxes.append((round(x / scale), round(y / scale), round(bw / scale), round(bh / scale)))
        boxes.sort(key=lambda b: b[2] * b[3], reverse=True)
        return MotionReading(round(level, 4), boxes, ts)


def motion_fields(reading: MotionReading, moving: bool, place: Placement) -> dict[str, Any]:
    """The ``motion`` payload of the analyzer and the flow node alike: ``level, moving`` and
    the largest boxes in displayed source pixels and 0..1 (``place``: where the analysed image
    sits in the source picture)."""
    return {
        "level": reading.level,
        "moving": moving,
        **place.boxes_fields(reading.boxes[:MAX_BOXES]),
    }
