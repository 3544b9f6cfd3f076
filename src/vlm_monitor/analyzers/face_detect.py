"""Face detection with MediaPipe's BlazeFace models, shipped in ``vlm_monitor/models/``.

Two models of one family: short range (128x128 input, faces within ~2 m of a webcam) and
full range (192x192, faces up to ~5 m, e.g. a room camera). Both are SSD detectors: each
anchor (a cell centre of a feature map, fixed size 1x1) predicts a box and 6 keypoints as
offsets from it, plus one logit. The decoding follows MediaPipe's face detection graph:
anchors as its SsdAnchorsCalculator makes them, scores as sigmoid(clip(logit, +-100)),
then weighted non-maximum suppression (overlapping boxes are averaged, weighted by their
scores, not dropped) with an IoU threshold of 0.3.

The frame is letterboxed to the square input (aspect ratio kept, black bars) as MediaPipe
does; squashing a 16:9 frame into a square loses faces. Boxes and keypoints come back in the
given frame's pixels. A ``BlazeFace`` is not thread-safe (nor is a LiteRT interpreter).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from vlm_monitor.packaged import model_file

Range = Literal["short", "full"]
Box = tuple[int, int, int, int]  # x, y, width, height


@dataclass(frozen=True)
class _ModelSpec:
    file: str
    size: int  # square input side, pixels
    strides: tuple[int, ...]  # one per feature-map layer
    two_anchors_per_cell: bool  # MediaPipe's interpolated_scale_aspect_ratio == 1.0
    min_score: float


SPECS: dict[Range, _ModelSpec] = {
    # MediaPipe face_detection_short_range.pbtxt: 16x16x2 + 8x8x6 = 896 anchors.
    "short": _ModelSpec("face_detection_short_range.tflite", 128, (8, 16, 16, 16), True, 0.5),
    # face_detection_full_range.pbtxt: one 48x48 layer, one anchor per cell = 2304.
    "full": _ModelSpec("face_detection_full_range.tflite", 192, (4,), False, 0.6),
}
NMS_IOU = 0.3
SCORE_CLIP = 100.0
KEYPOINTS = 6  # the eyes, nose tip, mouth centre, ear tragions (see Detection)


def anchors(size: int, strides: tuple[int, ...], two_per_cell: bool) -> np.ndarray:
    """SSD anchor centres, (N, 2) in 0..1, in the order the model emits its predictions:
    layers sharing a stride are one feature map whose cells each hold an anchor per layer
    (two per layer when the interpolated aspect ratio is on)."""
    out: list[np.ndarray] = []
    layer = 0
    while layer < len(strides):
        same = layer
        while same < len(strides) and strides[same] == strides[layer]:
            same += 1
        per_cell = (same - layer) * (2 if two_per_cell else 1)
        cells = size // strides[layer]
        centre = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        ys, xs = np.meshgrid(centre, centre, indexing="ij")  # row-major: y outer, x inner
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(grid, per_cell, axis=0))
        layer = same
    return np.concatenate(out)


@dataclass(frozen=True)
class Detection:
    """One face in frame pixels. ``keypoints`` (6, 2): the two eyes (0 is the one on the
    picture's left in a frontal, non-mirrored face), nose tip, mouth centre, and the two ear
    tragions."""

    x: float
    y: float
    w: float
    h: float
    score: float
    keypoints: np.ndarray

    @property
    def box(self) -> Box:
        return (round(self.x), round(self.y), round(self.w), round(self.h))


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one (xmin, ymin, xmax, ymax) box with (N, 4) others."""
    ix = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    similarity: np.ndarray = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return similarity


def weighted_nms(
    corners: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's WEIGHTED suppression: the best remaining box takes every box overlapping
    it by more than ``iou`` (itself included) and becomes their score-weighted mean (corners
    and keypoints alike), keeping the best score. Averaging steadies the box from frame to
    frame, which the heart-rate region depends on."""
    order = np.argsort(-scores, kind="stable")
    out: list[tuple[np.ndarray, np.ndarray, float]] = []
    while order.size:
        best = order[0]
        overlap = _iou(corners[best], corners[order]) > iou
        group = order[overlap]
        weights = scores[group][:, None]
        total = float(weights.sum())
        box = (corners[group] * weights).sum(axis=0) / total
        points = (keypoints[group] * weights[:, :, None]).sum(axis=0) / total
        out.append((box, points, float(scores[best])))
        order = order[~overlap]
    return out


class BlazeFace:
    """One BlazeFace model (``short`` or ``full``) with its decoding. Not thread-safe."""

    def __init__(self, kind: Range = "short", min_score: float | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        spec = SPECS[kind]
        self.kind, self.size = kind, spec.size
        self.min_score = spec.min_score if min_score is None else min_score
        # One thread: the service runs many streams on a pool of threads already, and the
        # model takes ~1-3 ms, less than a thread hand-off inside the interpreter saves.
        self._interpreter = Interpreter(model_path=str(model_file(spec.file)), num_threads=1)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = sorted(
            self._interpreter.get_output_details(), key=lambda d: -int(d["shape"][-1])
        )  # regressors (…, 16) first, then scores (…, 1)
        self._boxes, self._scores = outputs[0]["index"], outputs[1]["index"]
        self._anchors = anchors(spec.size, spec.strides, spec.two_anchors_per_cell)
        self._canvas = np.zeros((spec.size, spec.size, 3), np.uint8)

    def letterbox(self, bgr: np.ndarray) -> tuple[np.ndarray, float, float, int, int]:
        """The frame scaled into the square input, centred between black bars: the RGB
        input, the x and y scales, and the bars' offsets (pixels of the input)."""
        h, w = bgr.shape[:2]
        scale = self.size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        ox, oy = (self.size - nw) // 2, (self.size - nh) // 2
        canvas = self._canvas
        canvas[:] = 0
        # INTER_AREA: a 640x360 frame shrinks 5x; bilinear would alias small faces away.
        canvas[oy : oy + nh, ox : ox + nw] = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_AREA)
        rgb = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)
        return rgb, nw / w, nh / h, ox, oy

    def detect(self, bgr: np.ndarray) -> list[Detection]:
        """Faces in a BGR frame, best score first."""
        rgb, sx, sy, ox, oy = self.letterbox(bgr)
        tensor = (rgb.astype(np.float32) * (2.0 / 255.0) - 1.0)[None]  # MediaPipe's -1..1
        self._interpreter.set_tensor(self._input, tensor)
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._boxes)[0]
        logits = self._interpreter.get_tensor(self._scores)[0, :, 0]
        keep = np.flatnonzero(logits > _logit(self.min_score))  # sigmoid is monotonic
        if keep.size == 0:
            return []
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits[keep], -SCORE_CLIP, SCORE_CLIP)))
        found = self.decode(raw[keep], self._anchors[keep])
        corners, points = found
        valid = (corners[:, 2] > corners[:, 0]) & (corners[:, 3] > corners[:, 1])
        merged = weighted_nms(corners[valid], points[valid], scores[valid].astype(np.float64))
        offset, scale = np.array([ox, oy]), np.array([sx, sy])
        out = []
        for box, kps, score in merged:
            # input pixels -> frame pixels: undo the bars, then the scale
            x0, y0 = (box[:2] * self.size - offset) / scale
            x1, y1 = (box[2:] * self.size - offset) / scale
            kp = (kps * self.size - offset) / scale
            out.append(Detection(float(x0), float(y0), float(x1 - x0), float(y1 - y0), score, kp))
        return out

    def decode(self, raw: np.ndarray, anchor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Regressor rows (x, y, w, h, then 6 keypoints' x, y, all in input pixels relative
        to the anchor) as (N, 4) corners and (N, 6, 2) keypoints, in 0..1 of the input.
        Anchors have a fixed size of 1, so widths need no anchor scaling."""
        values = raw.astype(np.float64) / self.size
        centre = values[:, :2] + anchor
        half = values[:, 2:4] / 2
        corners = np.concatenate([centre - half, centre + half], axis=1)
        points = values[:, 4 : 4 + 2 * KEYPOINTS].reshape(-1, KEYPOINTS, 2) + anchor[:, None, :]
        return corners, points


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


class FaceDetector:
    """Both BlazeFace models, built on first use. ``detect`` returns boxes, largest first,
    as the Haar detector it replaced did; ``auto`` tries the full-range model when the
    short-range one finds nothing. Thread-safe (a lock: the service gives each worker thread
    its own detector, so it is only ever contended by occasional callers such as a VLM
    provider)."""

    def __init__(self) -> None:
        self._models: dict[Range, BlazeFace] = {}
        self._lock = threading.Lock()

    def detections(
        self, bgr: np.ndarray, kind: Range | Literal["auto"] = "auto"
    ) -> list[Detection]:
        with self._lock:
            if kind != "auto":
                return self._model(kind).detect(bgr)
            return self._model("short").detect(bgr) or self._model("full").detect(bgr)

    def detect(self, bgr: np.ndarray, kind: Range | Literal["auto"] = "auto") -> list[Box]:
        found = [d.box for d in self.detections(bgr, kind)]
        return sorted(found, key=lambda b: b[2] * b[3], reverse=True)

    def _model(self, kind: Range) -> BlazeFace:
        found = self._models.get(kind)
        if found is None:
            found = self._models[kind] = BlazeFace(kind)
        return found
