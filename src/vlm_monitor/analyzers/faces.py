"""Face detection (OpenCV's shipped Haar cascade) and a tracker that keeps the box stable.

Detection costs ~40-70 ms at 640x360 here, so it runs at a low rate; in between, and when a
detection matches the tracked face (IoU), the box is held or smoothed. A stable box matters:
rPPG reads colour inside it, and a box that jumps once a second injects a 60 bpm artefact.
Not thread-safe: one tracker per stream.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # x, y, width, height


def iou(a: Box, b: Box) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


class FaceDetector:
    """Thread-safe (the cascade is guarded by a lock)."""

    def __init__(
        self, scale_factor: float = 1.1, min_neighbors: int = 5, min_size: int = 40
    ) -> None:
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise RuntimeError(f"cannot load the face cascade from {path}")
        self.scale_factor, self.min_neighbors, self.min_size = scale_factor, min_neighbors, min_size
        self._lock = threading.Lock()

    def detect(self, bgr: np.ndarray) -> list[Box]:
        """Faces, largest first."""
        grey = cv2.equalizeHist(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
        with self._lock:
            found = self._cascade.detectMultiScale(
                grey,
                scaleFactor=self.scale_factor,
                minNeighbors=self.min_neighbors,
                minSize=(self.min_size, self.min_size),
            )
        boxes: list[Box] = [(int(x), int(y), int(w), int(h)) for x, y, w, h in found]
        return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


class Detector(Protocol):
    def detect(self, bgr: np.ndarray) -> list[Box]: ...


@dataclass
class TrackedFace:
    box: Box
    age_s: float  # since the last detection that confirmed it


class FaceTracker:
    """Follows the main face: re-detects every ``detect_every_s``, matches by IoU, keeps the
    box for ``hold_s`` without a detection, and smooths small moves."""

    def __init__(
        self,
        detector: Detector,
        detect_every_s: float = 1.0,
        hold_s: float = 2.0,
        match_iou: float = 0.3,
        smoothing: float = 0.3,
    ) -> None:
        self.detector = detector
        self.detect_every_s, self.hold_s = detect_every_s, hold_s
        self.match_iou, self.smoothing = match_iou, smoothing
        self._box: Box | None = None
        self._confirmed_at = 0.0
        self._next_detect = 0.0

    def update(self, bgr: np.ndarray, ts: float) -> TrackedFace | None:
        """Detects when due, in the caller's thread; then the tracked face at ``ts``."""
        if self.detection_due(ts):
            self.accept(self.detector.detect(bgr), ts)
        return self.current(ts)

    def detection_due(self, ts: float) -> bool:
        """True once per ``detect_every_s``: the caller then detects and calls ``accept``."""
        if ts < self._next_detect:
            return False
        self._next_detect = ts + self.detect_every_s
        return True

    def accept(self, faces: list[Box], ts: float) -> None:
        if faces:
            self._accept(faces, ts)

    def current(self, ts: float) -> TrackedFace | None:
        if self._box is None or ts - self._confirmed_at > self.hold_s:
            self._box = None
            return None
        return TrackedFace(self._box, max(0.0, ts - self._confirmed_at))

    def _accept(self, faces: list[Box], ts: float) -> None:
        if self._box is not None:
            best = max(faces, key=lambda f: iou(f, self._box))  # type: ignore[arg-type]
            if iou(best, self._box) >= self.match_iou:
                k = self.smoothing
                self._box = tuple(
                    round((1 - k) * o + k * n)  # type: ignore[assignment]
                    for o, n in zip(self._box, best, strict=True)
                )
                self._confirmed_at = ts
                return
        self._box = faces[0]
        self._confirmed_at = ts
