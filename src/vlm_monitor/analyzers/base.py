"""What an analyzer is, and the per-stream state analyzers of one stream share.

An analyzer turns one frame (BGR at the stream's shared analysis size: the source's aspect
ratio within the ``analysis_size`` pixel budget) into a result payload, or None when it has
nothing new to say. Boxes in payloads are in displayed source pixels plus 0..1 (see
``placement``). It declares the rate it wants
(frames are decimated by timestamp before it sees them) and whether it keeps state per
stream; the service gives each stream its own instance, so state never crosses streams.
``analyze`` runs in a worker thread, one call at a time per instance.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from vlm_monitor.analyzers.emotion import EmotionModel
from vlm_monitor.analyzers.faces import (
    Box,
    DetectorMode,
    FaceModels,
    FaceTracking,
    TrackedFace,
)
from vlm_monitor.config import AnalyzerConfig
from vlm_monitor.geometry import Placement
from vlm_monitor.types import AnalysisResult as AnalysisResult  # vocabulary: the sink reads it
from vlm_monitor.types import Frame

log = logging.getLogger("vlm_monitor.analyzers")


class SharedModels:
    """Read-only models shared by every stream, one instance per worker thread: the LiteRT
    interpreters are not safe to share between threads, and a lock would serialise all
    streams' faces onto one core."""

    def __init__(self) -> None:
        self._local = threading.local()

    def faces(self) -> FaceModels:
        """The calling thread's face detection, mesh and iris models."""
        models = getattr(self._local, "faces", None)
        if models is None:
            models = self._local.faces = FaceModels()
        return models

    def detect(self, image: np.ndarray) -> list[Box]:
        return self.faces().detector.detect(image)

    def emotion(self, image: np.ndarray, face: Box | TrackedFace) -> dict[str, Any]:
        """Emotion of a face: on the upright crop its landmarks give, else on its box."""
        model = getattr(self._local, "emotion", None)
        if model is None:
            model = self._local.emotion = EmotionModel()
        if isinstance(face, TrackedFace):
            return model.predict(image, face.box, landmarks=face.landmarks)
        return model.predict(image, face)


class StreamContext:
    """State of one stream shared by its analyzers: the tracked face (``faces``: detection,
    landmarks, head pose, gaze, computed once per frame whichever analyzer asks first) and
    each analyzer's latest payload.

    Face work takes 2-5 ms a frame, so it runs inline in the asking analyzer's thread."""

    def __init__(
        self,
        stream_id: str,
        models: SharedModels,
        detect_every_s: float = 1.0,
        detector: DetectorMode = "auto",
        landmarks_fps: float | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.models = models
        self.latest: dict[str, dict[str, Any]] = {}
        self.faces = FaceTracking(
            models.faces, detect_every_s, detector, landmarks_fps=landmarks_fps
        )

    @property
    def detections(self) -> int:
        return self.faces.detections

    def face(self, image: np.ndarray, frame: Frame) -> TrackedFace | None:
        return self.faces.update(image, frame.capture_ts).main


def placement(image: np.ndarray, frame: Frame) -> Placement:
    """How the analysed picture maps onto the displayed source picture it was scaled from."""
    return Placement(frame.source_size, (int(image.shape[1]), int(image.shape[0])))


class Analyzer(ABC):
    name: ClassVar[str]
    stateful: ClassVar[bool] = True  # keeps state across frames of its stream
    # Seconds of frames kept in order while one is analysed; 0: only the newest is kept (a
    # slow analyzer skips to the present). An analyzer reading a signal over time keeps a
    # backlog, so a moment of queueing for a core delays its samples instead of losing them.
    backlog_s: ClassVar[float] = 0.0

    def __init__(self, config: AnalyzerConfig, context: StreamContext) -> None:
        self.config, self.context = config, context

    @property
    def fps(self) -> float:
        return self.config.rate

    @abstractmethod
    def analyze(self, image: np.ndarray, frame: Frame) -> dict[str, Any] | None:
        """Blocking; called from a worker thread. ``image`` is read-only."""
