"""Face Mesh (468 landmarks) and iris landmarks on a tracked face, with MediaPipe's models
shipped in ``vlm_monitor/models/``.

Both models want their subject upright and centred in a square crop: the face mesh a
192x192 crop 1.5 times the face's size, turned so the eyes are level; the iris model a
64x64 crop 2.3 times an eye's width around each eye (the picture's right-hand eye mirrored,
as the model knows one eye only). A ``Roi`` is such a turned square in frame pixels; the
crop is one affine warp, and landmarks come back through the same matrix.
Not thread-safe: one model object per thread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from vlm_monitor.analyzers.face_detect import Detection
from vlm_monitor.packaged import model_file

MESH_SIZE = 192
IRIS_SIZE = 64
MESH_SCALE = 1.5  # crop side / face side (MediaPipe's face landmark ROI)
IRIS_SCALE = 2.3  # crop side / eye width (MediaPipe's iris ROI)
MIN_FACE_SCORE = 0.5
# Mesh indices: eye corners as the picture shows a frontal face (left eye = picture's left).
LEFT_EYE = (33, 133)  # outer, inner corner
RIGHT_EYE = (362, 263)  # inner, outer corner


@dataclass(frozen=True)
class Roi:
    """A square of side ``size`` centred at (cx, cy), turned by ``angle`` radians (clockwise
    on screen: image y points down) so that its x axis runs along the face's eye line."""

    cx: float
    cy: float
    size: float
    angle: float

    def to_frame(self, out: int) -> np.ndarray:
        """2x3 affine matrix from ``out``x``out`` crop pixels to frame pixels."""
        s = self.size / out
        c, n = math.cos(self.angle) * s, math.sin(self.angle) * s
        half = out / 2
        return np.array(
            [[c, -n, self.cx - c * half + n * half], [n, c, self.cy - n * half - c * half]]
        )

    def crop(self, bgr: np.ndarray, out: int) -> np.ndarray:
        """The turned square as an ``out``x``out`` picture (black outside the frame)."""
        return cv2.warpAffine(
            bgr,
            self.to_frame(out),
            (out, out),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
        )


def _angle(start: np.ndarray, end: np.ndarray) -> float:
    return math.atan2(float(end[1] - start[1]), float(end[0] - start[0]))


def roi_from_detection(d: Detection, scale: float = MESH_SCALE) -> Roi:
    """The mesh crop for a detected face: its box's centre, 1.5 times its longer side,
    turned by the line through the two eye keypoints."""
    side = max(d.w, d.h) * scale
    return Roi(d.x + d.w / 2, d.y + d.h / 2, side, _angle(d.keypoints[0], d.keypoints[1]))


def roi_from_landmarks(points: np.ndarray, scale: float = MESH_SCALE) -> Roi:
    """The mesh crop for the next frame from this frame's landmarks (tracking without a
    detector): their extent measured along the eye line, so a tilted head does not inflate
    the square."""
    angle = _angle(points[LEFT_EYE[0], :2], points[RIGHT_EYE[1], :2])
    c, s = math.cos(angle), math.sin(angle)
    xy = points[:, :2]
    u = xy[:, 0] * c + xy[:, 1] * s
    v = -xy[:, 0] * s + xy[:, 1] * c
    mu, mv = (u.min() + u.max()) / 2, (v.min() + v.max()) / 2
    side = max(u.max() - u.min(), v.max() - v.min()) * scale
    return Roi(mu * c - mv * s, mu * s + mv * c, side, angle)


def _to_frame(points: np.ndarray, roi: Roi, out: int) -> np.ndarray:
    """Crop-pixel landmarks (N, 3) to frame pixels; z scales with x and y."""
    m = roi.to_frame(out)
    xy = points[:, :2] @ m[:, :2].T + m[:, 2]
    z = points[:, 2:3] * (roi.size / out)
    return np.concatenate([xy, z], axis=1)


def _interpreter(name: str) -> tuple[Any, int, list[int]]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_file(name)), num_threads=1)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    outputs = sorted(interpreter.get_output_details(), key=lambda d: -int(np.prod(d["shape"])))
    return interpreter, inp, [int(d["index"]) for d in outputs]


def _rgb01(crop: np.ndarray) -> np.ndarray:
    rgb = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
    return (rgb.astype(np.float32) * (1.0 / 255.0))[None]


@dataclass(frozen=True)
class Mesh:
    """468 landmarks (x, y in frame pixels; z in pixels too, towards the camera negative)
    and the model's confidence that the crop held a face."""

    points: np.ndarray
    score: float
    roi: Roi


class FaceMesh:
    """MediaPipe Face Mesh: 1x192x192x3 RGB in 0..1 -> 468x3 landmarks + a face logit."""

    def __init__(self) -> None:
        self._it, self._input, (self._points, self._flag) = _interpreter("face_landmark.tflite")

    def run(self, bgr: np.ndarray, roi: Roi) -> Mesh:
        it = self._it
        it.set_tensor(self._input, _rgb01(roi.crop(bgr, MESH_SIZE)))
        it.invoke()
        raw = it.get_tensor(self._points).reshape(-1, 3).astype(np.float64)
        logit = float(it.get_tensor(self._flag).ravel()[0])
        score = 1.0 / (1.0 + math.exp(-max(-100.0, min(100.0, logit))))
        return Mesh(_to_frame(raw, roi, MESH_SIZE), score, roi)


def eye_roi(points: np.ndarray, corners: tuple[int, int]) -> Roi:
    a, b = points[corners[0], :2], points[corners[1], :2]
    width = float(np.hypot(*(b - a)))
    centre = (a + b) / 2
    return Roi(float(centre[0]), float(centre[1]), width * IRIS_SCALE, _angle(a, b))


class Iris:
    """MediaPipe's iris model: 1x64x64x3 RGB in 0..1 -> 71 eye-contour points and 5 iris
    points (centre first). It was trained on one eye: the other is mirrored in and out."""

    def __init__(self) -> None:
        self._it, self._input, (self._contour, self._iris) = _interpreter("iris_landmark.tflite")

    def centre(self, bgr: np.ndarray, roi: Roi, mirrored: bool) -> np.ndarray:
        """The iris centre in frame pixels (x, y)."""
        crop = roi.crop(bgr, IRIS_SIZE)
        if mirrored:
            crop = crop[:, ::-1]
        it = self._it
        it.set_tensor(self._input, _rgb01(np.ascontiguousarray(crop)))
        it.invoke()
        iris = it.get_tensor(self._iris).reshape(-1, 3).astype(np.float64)
        if mirrored:
            iris[:, 0] = IRIS_SIZE - iris[:, 0]
        centre: np.ndarray = _to_frame(iris[:1], roi, IRIS_SIZE)[0, :2]
        return centre

    def centres(self, bgr: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Iris centres of the picture's left and right eye."""
        # The model's eye runs from the outer to the inner corner left to right, as the
        # picture's left eye does; the right eye reads the same way once mirrored.
        left = self.centre(bgr, eye_roi(points, LEFT_EYE), mirrored=False)
        right = self.centre(bgr, eye_roi(points, RIGHT_EYE), mirrored=True)
        return left, right
