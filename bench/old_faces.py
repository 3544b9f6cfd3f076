"""``vlm-monitor serve`` with the face pipeline it had before BlazeFace, for the side-by-side
end-to-end capacity run of bench/analyzers.py. Bench only: it patches this process.

The old pipeline: OpenCV's Haar cascade (frontal faces, equalised grey, scale 1.1, 5
neighbours, 40 px) once a second with the IoU tracker in between; heart rate read the skin
of the box's centre (a fifth off each side, an eighth off top and bottom); emotion read the
box's square crop. No landmarks, no attention. Analysis frames as they were then: scaled to
the budget (a 640x480 webcam to 554x416) by swscale, whose chroma the box's skin test reads
(OpenCV's halving, with its coarser chroma, took this pipeline from 1.7 to 28 bpm off at 720p).

Run: python bench/old_faces.py serve --config FILE
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import cv2
import numpy as np

from vlm_monitor import types
from vlm_monitor.analyzers import base
from vlm_monitor.analyzers.faces import Box, FaceTracker, TrackedFace
from vlm_monitor.cli import main
from vlm_monitor.geometry import fit_budget
from vlm_monitor.types import Frame

_local = threading.local()


class Haar:
    def detect(self, bgr: np.ndarray) -> list[Box]:
        cascade = getattr(_local, "cascade", None)
        if cascade is None:  # one per thread: the cascade is not thread-safe
            path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]
            cascade = _local.cascade = cv2.CascadeClassifier(path)
        grey = cv2.equalizeHist(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
        found = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(40, 40))
        boxes = [(int(x), int(y), int(w), int(h)) for x, y, w, h in found]
        return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


def face(self: base.StreamContext, image: np.ndarray, frame: Frame) -> TrackedFace | None:
    tracker = self.__dict__.get("_haar_tracker")
    if tracker is None:
        tracker = self.__dict__["_haar_tracker"] = FaceTracker(Haar(), detect_every_s=1.0)
    return tracker.update(image, frame.ts)


def box_centre(self: TrackedFace) -> tuple[list[np.ndarray], list[np.ndarray]]:
    x, y, w, h = self.box
    x0, x1, y0, y1 = x + w // 5, x + w - w // 5, y + h // 8, y + h - h // 8
    return [np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.int32)], []


def swscale(frame: Any, size: tuple[int, int]) -> np.ndarray:
    pixels: np.ndarray = frame.to_ndarray(
        width=size[0], height=size[1], format="bgr24", interpolation="AREA"
    )
    return pixels


def within_budget(width: int, height: int, budget: tuple[int, int] | None) -> tuple[int, int]:
    return (width, height) if budget is None else fit_budget(width, height, *budget)


base.StreamContext.face = face  # type: ignore[method-assign]
TrackedFace.skin_regions = box_centre  # type: ignore[method-assign]
types.to_bgr = swscale
types.analysis_size = within_budget

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
