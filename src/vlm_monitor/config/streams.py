"""``streams``: each camera, its reconnects, analyzers and clips."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from vlm_monitor.analyzers.params import DEFAULT_FPS, PARAMS, AnalyzerName
from vlm_monitor.config.base import STREAM_ID_PATTERN, SizeText, _Model, describe_errors, parse_size
from vlm_monitor.sources.url import parse_source_url, parse_stream_source
from vlm_monitor.vlm.schemas import check_schema


class ReconnectConfig(_Model):
    initial_s: float = Field(0.5, gt=0, description="first back-off delay, seconds")
    max_s: float = Field(10.0, gt=0, description="back-off cap, seconds")
    jitter: float = Field(0.2, ge=0, le=1, description="+/- fraction of random jitter")
    max_attempts: int | None = Field(
        None, ge=1, description="failed attempts in a row before state 'failed'; null = forever"
    )


class DedupeConfig(_Model):
    # Off by default: the clip processor's contract is a result every clip_seconds, and
    # clients that read results as a heartbeat would take a still camera for a dead one.
    enabled: bool = Field(False, description="skip clips that look like the last analysed one")
    threshold: float = Field(
        0.005,
        ge=0,
        le=1,
        description="share of the picture (0..1) that must change, in some sampled frame, "
        "for a clip to be analysed",
    )
    max_skip_s: float = Field(
        600.0, gt=0, description="a still scene is still analysed at least this often, seconds"
    )


class BudgetConfig(_Model):
    """Spending limits of VLM calls. Windows are fixed: the calendar minute, hour and UTC day
    (so "today" means the same on every node)."""

    calls_per_minute: int | None = Field(None, ge=1, description="calls; null = unlimited")
    tokens_per_hour: int | None = Field(
        None, ge=1, description="prompt + completion tokens, as the providers report them"
    )
    cost_per_day: float | None = Field(
        None,
        gt=0,
        description="in the currency of the providers' price_*_per_1k; null = unlimited",
    )

    @property
    def limited(self) -> bool:
        return any(
            v is not None for v in (self.calls_per_minute, self.tokens_per_hour, self.cost_per_day)
        )


class ClipsConfig(_Model):
    enabled: bool = Field(True, description="false keeps the settings but makes no clips")
    clip_seconds: float = Field(10.0, gt=0, le=600, description="one clip every this many seconds")
    frames_per_clip: int = Field(8, ge=1, le=64, description="frames sampled into each clip")
    input_fps: float = Field(5.0, gt=0, le=60, description="frames/s buffered for sampling")
    overlap_s: float = Field(0.0, ge=0, description="seconds the next clip re-uses")
    size: SizeText = Field(
        "640x360",
        description="pixel budget of clip frames: the source's aspect ratio at about "
        "WIDTH*HEIGHT pixels, as analysis_size",
    )
    sampling: Literal["time", "motion"] = Field(
        "time", description="time: evenly spaced, no duplicates; motion: spread by scene change"
    )
    provider: str | list[str] | None = Field(None, description="name(s); null = first provider")
    strategy: Literal["fallback", "round_robin"] = Field(
        "fallback", description="several providers: the next on failure, or take turns"
    )
    prompt: str = Field(
        "Describe anything unusual in this video.",
        description="template: $stream $start $end $frames $motion",
    )
    schema_: Annotated[dict[str, Any] | str | None, AfterValidator(check_schema)] = Field(
        None,
        alias="schema",
        description="structured answers: a JSON Schema (Draft 2020-12, checked at load), or "
        "a built-in by name: review",
    )
    concurrency: int = Field(1, ge=1, le=16, description="inference workers for this stream")
    dispatch: Literal["local", "redis"] = Field(
        "local", description="redis: clip jobs go to `vlm-monitor worker --redis-url` processes"
    )
    max_backlog: int = Field(100, ge=1, description="dispatch redis: jobs waiting, then refused")
    max_in_flight: int = Field(10, ge=1, le=100, description="clips waiting for the VLM")
    deadline_s: float = Field(120.0, gt=0, description="older clips are dropped as stale")
    stale_policy: Literal["latest_wins", "drop_oldest"] = Field(
        "drop_oldest",
        description="clips waiting for the VLM: drop stale ones, or skip to the newest",
    )
    annotate: bool = Field(
        False,
        description="frames sent carry the stream's latest analyzer boxes (motion, faces, "
        "text) and a caption with the stream and capture time",
    )
    min_motion: float | None = Field(None, ge=0, description="gate: skip stiller clips")
    dedupe: DedupeConfig = Field(
        default_factory=DedupeConfig,
        description="near-duplicate skip: no call for a clip like the last analysed one",
    )
    budget: BudgetConfig = Field(
        default_factory=BudgetConfig,
        description="this stream's VLM spending limits; a clip over them is skipped "
        "(reason budget)",
    )
    max_age_s: float = Field(3600.0, gt=0, description="clip file retention")
    max_total_mb: float = Field(500.0, gt=0, description="clip files kept per stream, MB")
    min_free_mb: float = Field(
        200.0, ge=0, description="less free disk than this pauses clip writing, MB"
    )

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _overlap(self) -> ClipsConfig:
        if self.overlap_s >= self.clip_seconds:
            raise ValueError("overlap_s must be shorter than clip_seconds")
        return self


class AnalyzerConfig(_Model):
    """``emotion`` or ``{name: emotion, fps: 5, params: {smoothing: 0.5}}``."""

    name: AnalyzerName = Field(description="which analyzer")
    fps: float | None = Field(None, gt=0, le=60, description="frames/s analysed; null = default")
    params: dict[str, Any] = Field(
        default_factory=dict, description="the analyzer's parameters (see Analyzer parameters)"
    )

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _check_params(self) -> AnalyzerConfig:
        try:
            PARAMS[self.name].model_validate(self.params)
        except ValidationError as exc:
            raise ValueError(f"{self.name} params: {'; '.join(describe_errors(exc))}") from None
        return self

    @property
    def rate(self) -> float:
        return self.fps or DEFAULT_FPS[self.name]


def _unique_analyzers(analyzers: list[AnalyzerConfig]) -> list[AnalyzerConfig]:
    names = [a.name for a in analyzers]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"analyzer(s) listed twice: {twice}")
    return analyzers


class StreamConfig(_Model):
    id: str = Field(
        pattern=STREAM_ID_PATTERN, description="the stream's name in the API and events"
    )
    url: str = Field(
        description="rtsp:// rtsps:// (user:password@ for digest/basic auth), tcp://HOST:PORT, "
        "http(s):// (MJPEG over HTTP, HLS .m3u8), file:// (a plain file), synthetic://, whip://"
    )
    transport: Literal["tcp", "udp", "auto"] = Field(
        "auto", description="RTSP transport; auto tries TCP, then UDP"
    )
    loop: bool = Field(True, description="file:// sources restart at the end")
    listen: bool = Field(
        False,
        description="tcp:// only: wait for the camera to connect to HOST:PORT instead of "
        "connecting to it (the server opens a listening port)",
    )
    analysis_size: SizeText | None = Field(
        "640x360",
        description="pixel budget WIDTHxHEIGHT of the analysis frames shared by analyzers: "
        "scaled to the source's aspect ratio at about WIDTH*HEIGHT pixels, even sides (640x360: "
        "16:9 -> 640x360, 4:3 -> 554x416, 1:1 -> 480x480, 9:16 -> 360x640); a source up to "
        "1.5 times the budget (a 640x480 webcam) is analysed at its own size, and one whose "
        "half is within that is halved (1280x960 -> 640x480): cheaper than an odd ratio; "
        "null = native",
    )
    stall_timeout_s: float = Field(
        5.0, gt=0, description="no frame for this long: reconnect (longer than an HLS segment)"
    )
    open_timeout_s: float = Field(5.0, gt=0, description="connecting may take this long, seconds")
    decode_threads: int = Field(1, ge=0, le=16, description="0 = FFmpeg decides")
    fast_start: bool = Field(
        True,
        description="live sources (tcp, rtsp, http): probe 64 KiB / 0.2 s instead of FFmpeg's "
        "5 MB / 5 s "
        "(first frame ~0.35 s instead of ~1.4 s, no start-up burst); off for streams whose "
        "parameters show up late",
    )
    reconnect: ReconnectConfig = Field(
        default_factory=ReconnectConfig, description="back-off between connection attempts"
    )
    analyzers: list[AnalyzerConfig] = Field(
        default_factory=list, description="names or {name, fps, params}"
    )
    whip_token: str | None = Field(
        None, min_length=8, description="whip:// streams: Bearer token a publisher must send"
    )
    clips: ClipsConfig | None = Field(None, description="clips for a VLM; null = none")
    reference_frame: str | None = Field(
        None,
        description="picture of the empty scene (a JPEG or PNG file) sent to the VLM before "
        "the frames of each clip or question, which the prompt says is the reference; "
        "checked when the configuration loads",
    )

    _analyzers_unique = field_validator("analyzers")(_unique_analyzers)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parse_source_url(value)
        return value

    @model_validator(mode="after")
    def _check_listen(self) -> StreamConfig:
        parse_stream_source(self.url, self.listen)  # listen: true is for tcp:// only
        return self

    @property
    def analysis_dims(self) -> tuple[int, int] | None:
        return parse_size(self.analysis_size) if self.analysis_size else None
