"""Has a region of the picture stayed as it was? The face tracker asks before running the
Face Mesh (~1.7 ms with its crop) again: a student sitting still keeps the landmarks of the
last run instead of paying for the same answer eight times a second.

The test compares a small grey thumbnail of the region with the one taken when the models
last ran: their mean absolute difference against what a shift of ``max_shift_px`` would give,
estimated from the reference thumbnail's own gradient (so a low-contrast face is judged by
its own scale). Measured on a real face (the astronaut, a 180x200 box, sensor noise sigma 2),
where a one-pixel shift is estimated at 3.1 levels: noise alone gives 0.24; a 0.6 % pulse
0.8; shifts of 0.5, 1 and 2 px give 1.9, 3.7 and 7.2; a 3 % change of light 3.8. So the pulse,
the noise and half a pixel pass as still, a shift of a pixel or a change of light does not,
and a picture with too little detail to tell never counts as still.
"""

from __future__ import annotations

import cv2
import numpy as np

Box = tuple[int, int, int, int]
THUMB = 32  # thumbnail side, pixels: ~5x smaller than a webcam face, so noise averages out


class Stillness:
    """``mark`` after running the models on ``box``; ``still`` then says whether the same
    region still looks the same, for at most ``max_age_s``. Not thread-safe: the face
    tracker holds its lock."""

    def __init__(self, max_shift_px: float = 1.0, max_age_s: float = 1.0) -> None:
        self.max_shift_px, self.max_age_s = max_shift_px, max_age_s
        self._box: Box | None = None
        self._thumb: np.ndarray | None = None
        self._limit = 0.0
        self._at = float("-inf")

    def reset(self) -> None:
        self._box = self._thumb = None

    def mark(self, bgr: np.ndarray, box: Box, ts: float) -> None:
        thumb = _thumbnail(bgr, box)
        if thumb is None:
            self.reset()
            return
        # Levels per picture pixel of shift, in each direction: the mean step between
        # neighbours, over the thumbnail's pixels per picture pixel.
        kx, ky = _factors(box)
        step = (
            float(np.abs(np.diff(thumb, axis=1)).mean()) / kx
            + float(np.abs(np.diff(thumb, axis=0)).mean()) / ky
        ) / 2
        self._box, self._thumb, self._at = box, thumb, ts
        self._limit = self.max_shift_px * step

    def still(self, bgr: np.ndarray, ts: float) -> bool:
        if self._box is None or self._thumb is None or ts - self._at > self.max_age_s:
            return False
        thumb = _thumbnail(bgr, self._box)
        if thumb is None:
            return False
        return float(np.abs(thumb - self._thumb).mean()) < self._limit


def _factors(box: Box) -> tuple[int, int]:
    """Picture pixels per thumbnail pixel, across and down: the fewest that cover the box."""
    return max(1, -(-box[2] // THUMB)), max(1, -(-box[3] // THUMB))


def _thumbnail(bgr: np.ndarray, box: Box) -> np.ndarray | None:
    """The grey thumbnail of ``box`` and a little around it: a whole number of picture
    pixels per thumbnail pixel, which OpenCV averages 7x faster than an odd ratio (13 us a
    face)."""
    kx, ky = _factors(box)
    x, y, bw, bh = box
    width, height = THUMB * kx, THUMB * ky
    if width > bgr.shape[1] or height > bgr.shape[0]:
        return None  # a frame smaller than the window: never still
    # Centred on the box, moved inside the frame where the box is near its edge.
    x0 = min(max(0, x + (bw - width) // 2), bgr.shape[1] - width)
    y0 = min(max(0, y + (bh - height) // 2), bgr.shape[0] - height)
    grey = cv2.cvtColor(bgr[y0 : y0 + height, x0 : x0 + width], cv2.COLOR_BGR2GRAY)
    small = cv2.resize(grey, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32)
