"""``vlm`` (providers, audit) and ``analysis`` (local analyzers and the exam-proctoring
consumer)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from vlm_monitor.config.base import _Model
from vlm_monitor.config.streams import AnalyzerConfig, BudgetConfig
from vlm_monitor.sources.url import parse_source_url


class VlmProviderConfig(_Model):
    name: str = Field(
        pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="what clips.provider and flow nodes call it"
    )
    kind: Literal["openai", "dashscope", "local"] = Field(
        description="openai: any /chat/completions server; dashscope: native API; local: offline"
    )
    base_url: str | None = Field(None, description="openai: e.g. http://HOST/v1 (required)")
    model: str | None = Field(None, description="model name (required for openai, dashscope)")
    api_key_env: str | None = Field(None, description="environment variable holding the key")
    mode: Literal["images", "video", "grid"] = Field(
        "images", description="frames as image parts, one video part, or one image grid"
    )
    timeout_s: float = Field(60.0, gt=0, description="one call, seconds")
    retries: int = Field(2, ge=0, le=10, description="retries on 429/5xx/timeouts")
    concurrency: int = Field(2, ge=1, le=64, description="calls in flight at once")
    calls_per_minute: int | None = Field(None, ge=1, description="budget; null = unlimited")
    price_input_per_1k: float = Field(
        0.0, ge=0, description="price of 1000 prompt (input) tokens, for cost_per_day budgets"
    )
    price_output_per_1k: float = Field(
        0.0, ge=0, description="price of 1000 completion (output) tokens"
    )
    breaker_failures: int = Field(
        5,
        ge=1,
        description="provider failures (5xx, 408, 429, timeouts, connection errors) in a row "
        "that open the circuit",
    )
    breaker_reset_s: float = Field(
        30.0, gt=0, description="an open circuit lets one probe call through after this long, s"
    )
    max_tokens: int = Field(512, ge=1, description="longest answer, tokens")
    structured: Literal["json_schema", "json_object", "prompt"] = Field(
        "json_schema",
        description="openai, when a schema is set: response_format json_schema (strict), "
        "json_object (JSON mode, schema in the prompt) or prompt (schema in the prompt only, "
        "for servers without response_format)",
    )
    jpeg_quality: int = Field(80, ge=10, le=100, description="frames sent as JPEG at this quality")
    context_tokens: int | None = Field(
        None,
        ge=256,
        description="the model's context, tokens: the frames sent are as many as fit beside "
        "the text and max_tokens (evenly sampled, first and last kept); null = no limit",
    )
    image_tokens: int | None = Field(
        None,
        ge=1,
        description="tokens one picture costs (OpenAI: 85 with detail low, 85 + 170 per "
        "512-px tile otherwise); null = counted from its pixels as Qwen-VL does, one token "
        "per 28x28 pixels",
    )
    max_pixels: int | None = Field(
        None,
        ge=3136,
        description="largest picture sent, width*height pixels: larger frames are scaled "
        "down keeping their aspect ratio (Qwen-VL's default cap is 1280 tokens = 1003520); "
        "null = as the clip has them",
    )

    @model_validator(mode="after")
    def _needs(self) -> VlmProviderConfig:
        if self.kind in ("openai",) and not (self.base_url and self.model):
            raise ValueError(f"provider {self.name}: kind openai needs base_url and model")
        if self.kind == "dashscope" and not self.model:
            raise ValueError(f"provider {self.name}: kind dashscope needs model")
        return self


class AuditConfig(_Model):
    enabled: bool = Field(
        False, description="record every VLM question and answer in data_dir/audit"
    )
    max_mb: float = Field(500.0, gt=0, description="the audit directory's size; oldest go first")
    keep_days: float | None = Field(
        30.0, gt=0, description="records and frames older than this go; null = only max_mb"
    )


class VlmConfig(_Model):
    providers: list[VlmProviderConfig] = Field(
        default_factory=list, description="vision-language models clips and flows may call"
    )
    shared_budgets: bool = Field(
        True,
        description="with bus.kind redis: budgets (the providers' calls_per_minute, "
        "vlm.budget, streams' clips.budget) and spend count the calls of every server and "
        "worker on that Redis; false: each process counts its own",
    )
    budget: BudgetConfig = Field(
        default_factory=BudgetConfig,
        description="limits of all VLM calls together (every stream, flow and provider)",
    )
    audit: AuditConfig = Field(
        default_factory=AuditConfig,
        description="audit log: prompt, schema, frames, request parameters, raw response, "
        "tokens, cost and latency of each call (vlm-monitor replay puts them again)",
    )


class OverloadConfig(_Model):
    """What the analyzers do when this machine cannot keep up with every stream's rates."""

    admit: Literal["lower_rate", "refuse"] = Field(
        "lower_rate",
        description="a new stream while shedding: lower_rate starts it at the shed rates; "
        "refuse answers 503 as soon as the analyzers shed or are busier than busy_share",
    )
    min_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="the least share of their rates analyzers shed to; at it, new streams "
        "with analyzers are refused (503) so the running ones do not break",
    )
    busy_share: float = Field(
        0.85,
        gt=0,
        le=1,
        description="busy share of the analyzer threads (or processes), or of the cores the "
        "server and its analyzer processes use, above which rates do not rise",
    )
    period_s: float = Field(2.0, ge=0.5, le=60, description="how often the load is measured")


class AnalysisConfig(_Model):
    """Local analyzers, and how the exam-proctoring calls (``POST /api/rtsp/start``) behave."""

    threads: int = Field(0, ge=0, le=64, description="analyzer worker threads; 0 = CPU count")
    processes: int = Field(
        0,
        ge=0,
        le=64,
        description="analyzer processes: 0 = analyzers run on the threads of the server process; "
        "N = in N child processes (a stream's analyzers in one), which use every core where "
        "the server's one interpreter cannot (many face streams); unused with dispatch redis",
    )
    overload: OverloadConfig = Field(default_factory=OverloadConfig)
    keep_results: int = Field(
        200_000, ge=1000, description="analyzer results kept in SQLite (oldest pruned)"
    )
    rtsp_default_analyzers: list[AnalyzerConfig] = Field(
        default_factory=lambda: [
            AnalyzerConfig(name="emotion"),
            AnalyzerConfig(name="heart_rate"),
            AnalyzerConfig(name="attention"),
        ],
        description="what POST /api/rtsp/start runs when the body names none",
    )
    dispatch: Literal["local", "redis"] = Field(
        "local",
        description="redis: analyzers run in `vlm-monitor worker --redis-url` processes",
    )
    max_backlog: int = Field(
        30, ge=1, le=10000, description="dispatch redis: frames waiting per stream; oldest dropped"
    )
    rtsp_base: str | None = Field(
        default_factory=lambda: _mediamtx_base(os.environ),
        description="POST /api/rtsp/start without rtsp_url reads {rtsp_base}/{stream_name}; "
        "default rtsp://$MEDIAMTX_HOST:8554 when MEDIAMTX_HOST is set",
    )
    session_pattern: str = Field(
        r"^exam-(?P<exam_id>[^-]+)-user-(?P<student_id>.+)$",
        description="automatic stream -> session mapping (named groups exam_id, student_id)",
    )

    @field_validator("rtsp_base")
    @classmethod
    def _check_base(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.rstrip("/")
        if not value.startswith(("rtsp://", "rtsps://")):
            raise ValueError(f"{value!r} must start with rtsp:// or rtsps://")
        parse_source_url(f"{value}/probe")
        return value

    @field_validator("session_pattern")
    @classmethod
    def _check_pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value


def _mediamtx_base(env: Mapping[str, str]) -> str | None:
    """MediaMTX's RTSP address, as the original deployment finds it (``MEDIAMTX_HOST``)."""
    host = env.get("MEDIAMTX_HOST")
    return f"rtsp://{host}:8554" if host else None
