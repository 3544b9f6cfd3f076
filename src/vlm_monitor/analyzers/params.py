"""Each analyzer's parameters, validated where the configuration is (no heavy imports here).

An analyzer is registered twice under one name, the same way: its parameters here
(``@PARAMS.register``), which the configuration reads, and its class in ``builtin.py``
(``@ANALYZERS.register``), which needs OpenCV and the models; plus its name in
``AnalyzerName``, the enumeration the API schema shows."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from vlm_monitor.registry import Registry


class AnalyzerParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default_fps: ClassVar[float] = 5.0  # frames/s the analyzer gets unless ``fps`` says


PARAMS: Registry[type[AnalyzerParams]] = Registry("analyzer")


class FaceParams(AnalyzerParams):
    detect_every_s: float = Field(1.0, gt=0, le=10, description="face re-detection period")
    landmarks_fps: float = Field(
        8.0,
        gt=0,
        le=60,
        description="Face Mesh runs at most this often; frames between reuse the last "
        "landmarks (heart rate still reads every frame's skin under them)",
    )
    detector: Literal["auto", "short", "full"] = Field(
        "auto",
        description="face detector: short (webcam distance, within ~2 m), full (room "
        "cameras, ~5 m), auto (short range; full range while faces are small or none found)",
    )


@PARAMS.register("motion")
class MotionParams(AnalyzerParams):
    threshold: int = Field(25, ge=1, le=255, description="grey-level change that counts")
    min_level: float = Field(0.01, ge=0, le=1, description="changed fraction that is motion")
    report_every_s: float = Field(1.0, gt=0, description="result period while moving")
    hold_s: float = Field(1.0, ge=0, description="still this long before motion counts as over")


@PARAMS.register("emotion")
class EmotionParams(FaceParams):
    smoothing: float = Field(
        0.5, ge=0, lt=1, description="weight of the previous scores (0 = no smoothing)"
    )


@PARAMS.register("heart_rate")
class HeartRateParams(FaceParams):
    default_fps: ClassVar[float] = 15.0
    method: Literal["pos", "chrom"] = "pos"
    window_s: float = Field(10.0, ge=4, le=60)
    update_s: float = Field(1.0, gt=0, le=10)
    min_snr_db: float = Field(-3.0, ge=-20, le=20, description="below: bpm null, weak signal")


@PARAMS.register("attention")
class AttentionParams(FaceParams):
    yaw_limit: float = Field(30.0, gt=0, le=90, description="head turned further: looking away")
    pitch_limit: float = Field(25.0, gt=0, le=90, description="head tipped further: looking away")
    gaze_limit: float = Field(
        0.7, gt=0, le=1, description="iris offset in the eye (0 centre, 1 corner): looking away"
    )
    absent_s: float = Field(5.0, ge=0, le=600, description="no face this long: absent")
    multiple_s: float = Field(2.0, ge=0, le=600, description="more faces this long: multiple")
    away_s: float = Field(3.0, ge=0, le=600, description="looking away this long: incident")
    report_every_s: float = Field(1.0, gt=0, le=60, description="result period when unchanged")


@PARAMS.register("ocr")
class OcrParams(AnalyzerParams):
    default_fps: ClassVar[float] = 0.5
    roi: tuple[int, int, int, int] | None = Field(
        None, description="x, y, width, height in displayed source pixels; null = whole frame"
    )
    lang: str = Field("eng", pattern=r"^[a-z_]{3,8}(\+[a-z_]{3,8})*$")
    psm: int = Field(6, ge=0, le=13, description="tesseract page segmentation mode")
    min_confidence: float = Field(50.0, ge=0, le=100, description="words below are dropped")
    timeout_s: float = Field(10.0, gt=0, le=60)


DEFAULT_FPS = {name: params.default_fps for name, params in PARAMS.items()}
AnalyzerName = Literal["motion", "emotion", "heart_rate", "attention", "ocr"]
