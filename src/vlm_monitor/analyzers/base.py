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
from concurrent.futures import Executor
from typing import Any, ClassVar

import numpy as np

from vlm_monitor.analyzers.emotion import EmotionModel
from vlm_monitor.analyzers.faces import Box, FaceDetector, FaceTracker, TrackedFace
from vlm_monitor.config import AnalyzerConfig
from vlm_monitor.geometry import Placement
from vlm_monitor.types import AnalysisResult as AnalysisResult  # vocabulary: the sink reads it
from vlm_monitor.types import Frame

log = logging.getLogger("vlm_monitor.analyzers")


class SharedModels:
    """Read-only models shared by every stream, one instance per worker thread: OpenCV's
    cascade and the TFLite interpreter are not safe to share between threads, and a lock
    would serialise all streams' detections onto one core."""

    def __init__(self) -> None:
        self._local = threading.local()

    def detect(self, image: np.ndarray) -> list[Box]:
        detector = getattr(self._local, "detector", None)
        if detector is None:
            detector = self._local.detector = FaceDetector()
        return detector.detect(image)

    def emotion(self, image: np.ndarray, box: Box) -> dict[str, Any]:
        model = getattr(self._local, "emotion", None)
        if model is None:
            model = self._local.emotion = EmotionModel()
        return model.predict(image, box)


class StreamContext:
    """State of one stream shared by its analyzers: the tracked face (emotion and heart rate
    read the same box) and each analyzer's latest payload.

    With an executor, face detection (~30-70 ms) runs as its own job, at most one at a time
    per stream, while the analyzers go on with the last known box: a heart-rate analyzer at
    15 fps never waits for a detection and never loses the frames that came meanwhile.
    Without one (tests, benchmarks), detection runs inline."""

    def __init__(
        self,
        stream_id: str,
        models: SharedModels,
        detect_every_s: float = 1.0,
        executor: Executor | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.models = models
        self.latest: dict[str, dict[str, Any]] = {}
        self._tracker = FaceTracker(models, detect_every_s=detect_every_s)
        self._executor = executor
        self._lock = threading.Lock()
        self._detecting = False
        self._primed = False
        self.detections = 0
        self.detection_errors = 0

    def face(self, image: np.ndarray, frame: Frame) -> TrackedFace | None:
        with self._lock:
            due = not self._detecting and self._tracker.detection_due(frame.ts)
            if due and (self._executor is None or not self._primed):
                # The first detection is inline, so the first results already know the face.
                self._primed = True
                self._tracker.accept(self.models.detect(image), frame.ts)
            elif due:
                self._detecting = True
                try:
                    self._executor.submit(self._detect, image, frame.ts)  # type: ignore[union-attr]
                except RuntimeError:  # the pool is shutting down
                    self._detecting = False
            return self._tracker.current(frame.ts)

    def _detect(self, image: np.ndarray, ts: float) -> None:
        try:
            faces = self.models.detect(image)
        except Exception:
            self.detection_errors += 1
            if self.detection_errors in (1, 10, 100) or self.detection_errors % 1000 == 0:
                log.exception(
                    "face detection failed",
                    extra={"fields": {"stream": self.stream_id, "errors": self.detection_errors}},
                )
            faces = []
        with self._lock:
            self._detecting = False
            self.detections += 1
            self._tracker.accept(faces, ts)


def placement(image: np.ndarray, frame: Frame) -> Placement:
    """How the analysed picture maps onto the displayed source picture it was scaled from."""
    return Placement(frame.source_size, (int(image.shape[1]), int(image.shape[0])))


class Analyzer(ABC):
    name: ClassVar[str]
    stateful: ClassVar[bool] = True  # keeps state across frames of its stream

    def __init__(self, config: AnalyzerConfig, context: StreamContext) -> None:
        self.config, self.context = config, context

    @property
    def fps(self) -> float:
        return self.config.rate

    @abstractmethod
    def analyze(self, image: np.ndarray, frame: Frame) -> dict[str, Any] | None:
        """Blocking; called from a worker thread. ``image`` is read-only."""
