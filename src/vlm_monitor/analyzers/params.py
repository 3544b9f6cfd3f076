"""Each analyzer's parameters, validated where the configuration is (no heavy imports here)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FaceParams(_Params):
    detect_every_s: float = Field(1.0, gt=0, le=10, description="face re-detection period")


class EmotionParams(FaceParams):
    smoothing: float = Field(
        0.5, ge=0, lt=1, description="weight of the previous scores (0 = no smoothing)"
    )


class HeartRateParams(FaceParams):
    method: Literal["pos", "chrom"] = "pos"
    window_s: float = Field(10.0, ge=4, le=60)
    update_s: float = Field(1.0, gt=0, le=10)
    min_snr_db: float = Field(-3.0, ge=-20, le=20, description="below: bpm null, weak signal")


class MotionParams(_Params):
    threshold: int = Field(25, ge=1, le=255, description="grey-level change that counts")
    min_level: float = Field(0.01, ge=0, le=1, description="changed fraction that is motion")
    report_every_s: float = Field(1.0, gt=0, description="result period while moving")
    hold_s: float = Field(1.0, ge=0, description="still this long before motion counts as over")


class OcrParams(_Params):
    roi: tuple[int, int, int, int] | None = Field(
        None, description="x, y, width, height in displayed source pixels; null = whole frame"
    )
    lang: str = Field("eng", pattern=r"^[a-z_]{3,8}(\+[a-z_]{3,8})*$")
    psm: int = Field(6, ge=0, le=13, description="tesseract page segmentation mode")
    min_confidence: float = Field(50.0, ge=0, le=100, description="words below are dropped")
    timeout_s: float = Field(10.0, gt=0, le=60)


PARAMS: dict[str, type[_Params]] = {
    "motion": MotionParams,
    "emotion": EmotionParams,
    "heart_rate": HeartRateParams,
    "ocr": OcrParams,
}
DEFAULT_FPS = {"motion": 5.0, "emotion": 5.0, "heart_rate": 15.0, "ocr": 0.5}
AnalyzerName = Literal["motion", "emotion", "heart_rate", "ocr"]
