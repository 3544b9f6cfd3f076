"""The built-in analyzers. A new analyzer is a subclass here (or anywhere imported with this
module) decorated with ``@ANALYZERS.register("name")``, and its parameters registered under
the same name in ``params.py``."""

from __future__ import annotations

from typing import Any

import numpy as np

from vlm_monitor.analyzers.attention import AttentionAnalyzer
from vlm_monitor.analyzers.base import Analyzer, SharedModels, StreamContext, placement
from vlm_monitor.analyzers.emotion import no_face
from vlm_monitor.analyzers.faces import Box, DetectorMode, TrackedFace
from vlm_monitor.analyzers.motion import MotionDetector, motion_fields
from vlm_monitor.analyzers.ocr import read_text, tesseract_path
from vlm_monitor.analyzers.params import (
    EmotionParams,
    FaceParams,
    HeartRateParams,
    MotionParams,
    OcrParams,
)
from vlm_monitor.analyzers.rppg import HeartRateEstimator, SkinTrace
from vlm_monitor.config import AnalyzerConfig, StreamConfig
from vlm_monitor.geometry import Placement
from vlm_monitor.registry import PluginError, Registry
from vlm_monitor.types import Frame

ANALYZERS: Registry[type[Analyzer]] = Registry("analyzer")
ANALYZERS.register("attention")(AttentionAnalyzer)


def emotion_fields(
    models: SharedModels, image: np.ndarray, face: TrackedFace | Box | None, place: Placement
) -> dict[str, Any]:
    """The ``emotion`` payload of the analyzer and the flow node alike, before smoothing:
    the scores of ``face`` (a tracked face, read upright from its landmarks, or just a box;
    None: no face) and its box in displayed source pixels and 0..1. Blocking."""
    if face is None:
        return no_face()
    box = face if isinstance(face, tuple) else face.box
    return {**models.emotion(image, face), **place.box_fields(box)}


@ANALYZERS.register("emotion")
class EmotionAnalyzer(Analyzer):
    """The ``video_emotion_result``: ``dominant_emotion, face_detected, confidence,
    emotions{7}, box, box_norm`` (the face), optionally smoothed over time (exponential
    average of the scores)."""

    name = "emotion"

    def __init__(self, config: AnalyzerConfig, context: StreamContext) -> None:
        super().__init__(config, context)
        self.params = EmotionParams.model_validate(config.params)
        self._smoothed: dict[str, float] | None = None

    def analyze(self, image: np.ndarray, frame: Frame) -> dict[str, Any]:
        face = self.context.face(image, frame)
        result = emotion_fields(self.context.models, image, face, placement(image, frame))
        if face is None:
            self._smoothed = None
            return result
        k = self.params.smoothing
        if k > 0 and self._smoothed is not None:
            previous = self._smoothed
            scores = {e: k * previous[e] + (1 - k) * p for e, p in result["emotions"].items()}
            dominant = max(scores, key=lambda e: scores[e])
            result = {
                **result,
                "dominant_emotion": dominant,
                "confidence": round(scores[dominant], 4),
                "emotions": {e: round(p, 4) for e, p in scores.items()},
            }
        self._smoothed = result["emotions"]
        return result


@ANALYZERS.register("heart_rate")
class HeartRateAnalyzer(Analyzer):
    """Camera heart rate (rPPG) on the tracked face's skin: a reading every ``update_s`` over
    a ``window_s`` sliding window; ``bpm`` is null with a ``reason`` when it cannot be
    trusted."""

    name = "heart_rate"
    backlog_s = 0.5  # the pulse needs every sample at the asked rate, not the newest one

    def __init__(self, config: AnalyzerConfig, context: StreamContext) -> None:
        super().__init__(config, context)
        p = HeartRateParams.model_validate(config.params)
        self.min_snr_db = p.min_snr_db
        self._estimator = HeartRateEstimator(
            window_s=p.window_s,
            update_s=p.update_s,
            method=p.method,
            rate_hz=config.rate,
            min_snr_db=p.min_snr_db,
        )
        self._skin = SkinTrace()

    def analyze(self, image: np.ndarray, frame: Frame) -> dict[str, Any] | None:
        face = self.context.face(image, frame)
        if face is None:
            self._skin.reset()
            rgb = None
        else:
            rgb = self._skin.mean(image, face.skin_regions(), frame.capture_ts)
        reading = self._estimator.add(frame.capture_ts, rgb)
        if reading is None:
            return None
        confidence = 0.0
        if reading.bpm is not None and reading.snr_db is not None:
            # 0 at the acceptance threshold, 1 at 10 dB above it.
            confidence = min(1.0, max(0.0, (reading.snr_db - self.min_snr_db) / 10.0))
        return {
            "bpm": reading.bpm,
            "confidence": round(confidence, 3),
            "snr_db": reading.snr_db,
            "window_s": reading.window_s,
            "method": reading.method,
            "face_detected": face is not None,
            "reason": reading.reason,
            **placement(image, frame).box_fields(None if face is None else face.box),
        }


@ANALYZERS.register("motion")
class MotionAnalyzer(Analyzer):
    """Motion level and boxes; reports when motion starts or stops (after ``hold_s`` of
    stillness, so a flicker is one incident), and every ``report_every_s`` while it goes on.
    The latest reading is always in the stream context."""

    name = "motion"

    def __init__(self, config: AnalyzerConfig, context: StreamContext) -> None:
        super().__init__(config, context)
        self.params = MotionParams.model_validate(config.params)
        self._detector = MotionDetector(threshold=self.params.threshold)
        self._moving = False
        self._last_motion = float("-inf")
        self._next_report = 0.0

    def analyze(self, image: np.ndarray, frame: Frame) -> dict[str, Any] | None:
        reading = self._detector.update(image, frame.capture_ts)
        if reading.level >= self.params.min_level:
            self._last_motion = frame.capture_ts
        moving = frame.capture_ts - self._last_motion <= self.params.hold_s
        payload = motion_fields(reading, moving, placement(image, frame))
        self.context.latest[self.name] = payload
        changed, self._moving = moving != self._moving, moving
        if changed or (moving and frame.capture_ts >= self._next_report):
            self._next_report = frame.capture_ts + self.params.report_every_s
            return payload
        return None


@ANALYZERS.register("ocr")
class OcrAnalyzer(Analyzer):
    """Text in the frame (or a region of it, in displayed source pixels), with per-word
    confidence and boxes."""

    name = "ocr"
    stateful = False

    def __init__(self, config: AnalyzerConfig, context: StreamContext) -> None:
        super().__init__(config, context)
        self.params = OcrParams.model_validate(config.params)
        tesseract_path()  # fail at start, with the fix in the message, not on every frame

    def analyze(self, image: np.ndarray, frame: Frame) -> dict[str, Any]:
        p = self.params
        return read_text(
            image,
            placement(image, frame),
            p.roi,
            lang=p.lang,
            psm=p.psm,
            timeout_s=p.timeout_s,
            min_confidence=p.min_confidence,
        )


def build_analyzers(
    stream_id: str,
    configs: list[AnalyzerConfig],
    models: SharedModels,
) -> tuple[StreamContext, dict[str, Analyzer]]:
    """One stream's analyzers around one shared StreamContext, detecting faces and running
    the Face Mesh as often as the most demanding of them asks, with the face detector they
    name (``auto`` when they disagree: the stream has one face tracker)."""
    detect_every = min((float(a.params.get("detect_every_s", 1.0)) for a in configs), default=1.0)
    usual = FaceParams().landmarks_fps
    landmarks_fps = max(
        (float(a.params.get("landmarks_fps", usual)) for a in configs), default=usual
    )
    detectors = {a.params["detector"] for a in configs if "detector" in a.params}
    detector: DetectorMode = detectors.pop() if len(detectors) == 1 else "auto"
    # Head pose and irises run only on the frames attention analyses (it asks to look).
    context = StreamContext(stream_id, models, detect_every, detector, landmarks_fps)
    analyzers: dict[str, Analyzer] = {}
    for config in configs:
        try:
            analyzers[config.name] = ANALYZERS[config.name](config, context)
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
            raise PluginError("analyzer", config.name, reason) from exc
    return context, analyzers


def check_analyzers(streams: list[StreamConfig]) -> None:
    """Builds (and drops) each stream's analyzers, so that one that cannot be built (OCR
    without Tesseract) stops start-up with its name and reason instead of leaving a stream
    from the configuration file running without it. Raises PluginError."""
    models = SharedModels()  # models load on first use: building analyzers loads none
    for stream in streams:
        try:
            build_analyzers(stream.id, stream.analyzers, models)
        except PluginError as exc:
            raise PluginError(exc.kind, exc.name, f"{exc.reason} (stream {stream.id})") from exc
