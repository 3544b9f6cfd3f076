"""Configuration: one YAML or JSON file, validated by pydantic with messages naming the bad key."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import json5
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from vlm_monitor.analyzers.params import DEFAULT_FPS, PARAMS, AnalyzerName
from vlm_monitor.config_events import EventsConfig, MqttConfig, NotifyTarget
from vlm_monitor.sources.url import parse_source_url, parse_stream_source, redact_url
from vlm_monitor.vlm.schemas import check_schema

log = logging.getLogger("vlm_monitor.config")
STREAM_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class ConfigError(ValueError):
    """A configuration file or body that cannot be used; the message names key and value."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerConfig(_Model):
    host: str = Field(
        "127.0.0.1",
        description="address to listen on; 0.0.0.0 = every interface (set tokens first)",
    )
    port: int = Field(8080, ge=0, le=65535, description="HTTP port (0 = any free port)")
    api_token: str | None = Field(
        None, min_length=8, description="required by every control endpoint once set"
    )
    viewer_token: str | None = Field(
        None, min_length=8, description="read-only: dashboard, live views, events, Socket.IO"
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="other origins allowed to call the API (none: strict)"
    )
    metrics_public: bool = Field(False, description="/metrics without a token")
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="larger requests get 413")
    max_connections_per_client: int = Field(
        64, ge=1, description="open MJPEG/WebSocket/Socket.IO connections per client address"
    )
    max_streams: int = Field(256, ge=1, description="more streams are refused with 429")
    max_flows: int = Field(200, ge=1, description="more flows are refused with 429")
    max_socketio_sessions: int = Field(
        1000, ge=1, description="Socket.IO (Engine.IO) sessions in total; more get 429"
    )
    header_timeout_s: float = Field(
        10.0, gt=0, le=300, description="a request's headers must arrive within this time"
    )
    allowed_hosts: list[str] | None = Field(
        None,
        description="Host header values served (port ignored; '*' = any); null = the bind "
        "host, plus localhost, 127.0.0.1 and ::1 when bound to loopback (any when bound to "
        "0.0.0.0 or ::)",
    )
    webhook_allow: list[str] = Field(
        default_factory=list,
        description="hosts or networks (CIDR) webhook nodes may post to even though they are "
        "private, loopback or link-local (those are refused unless listed)",
    )
    data_dir: str = Field(
        "./data", description="SQLite database (vlm-monitor.db) and clips/<stream>/ MP4s"
    )
    media_dir: str = Field(
        "./media", description="file:// streams added over the API must be inside it"
    )
    log_dir: str = Field("./logs", description="JSON-lines logs, one file per command")
    jpeg_quality: int = Field(80, ge=10, le=100, description="JPEG quality for live view")
    mjpeg_fps: float = Field(15, gt=0, le=60, description="max frames/s per MJPEG viewer")


class ReconnectConfig(_Model):
    initial_s: float = Field(0.5, gt=0, description="first back-off delay, seconds")
    max_s: float = Field(10.0, gt=0, description="back-off cap, seconds")
    jitter: float = Field(0.2, ge=0, le=1, description="+/- fraction of random jitter")
    max_attempts: int | None = Field(
        None, ge=1, description="failed attempts in a row before state 'failed'; null = forever"
    )


def parse_size(value: str) -> tuple[int, int]:
    try:
        w, h = (int(part) for part in value.lower().split("x"))
    except ValueError:
        raise ValueError(f"size {value!r} is not WIDTHxHEIGHT, e.g. 640x360") from None
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise ValueError(f"size {value!r} is out of range 16..8192")
    return w, h


def _valid_size(value: str) -> str:
    parse_size(value)
    return value


SizeText = Annotated[str, AfterValidator(_valid_size)]  # "WIDTHxHEIGHT"


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
    min_motion: float | None = Field(None, ge=0, description="gate: skip stiller clips")
    dedupe: DedupeConfig = Field(
        default_factory=DedupeConfig,
        description="near-duplicate skip: no call for a clip like the last analysed one",
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
        "16:9 -> 640x360, 4:3 -> 554x416, 1:1 -> 480x480, 9:16 -> 360x640); a source within "
        "the budget is analysed at its own size; null = native",
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


class VlmConfig(_Model):
    providers: list[VlmProviderConfig] = Field(
        default_factory=list, description="vision-language models clips and flows may call"
    )
    shared_budgets: bool = Field(
        False,
        description="with bus.kind redis: each provider's calls_per_minute counts the calls "
        "of every server and worker on that Redis",
    )
    audit: AuditConfig = Field(
        default_factory=AuditConfig,
        description="audit log: prompt, schema, frames and answer of each call "
        "(vlm-monitor replay puts them again)",
    )


class AnalysisConfig(_Model):
    """Local analyzers, and how the exam-proctoring calls (``POST /api/rtsp/start``) behave."""

    threads: int = Field(0, ge=0, le=64, description="analyzer worker threads; 0 = CPU count")
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


REALTIME_DEFAULTS = {
    "dashscope": (
        "wss://dashscope.aliyuncs.com/api-ws/v1/realtime",
        "qwen3-omni-flash-realtime",
        "DASHSCOPE_API_KEY",
    ),
    "openai": ("wss://api.openai.com/v1/realtime", "gpt-realtime", "OPENAI_API_KEY"),
}


class RealtimeProviderConfig(_Model):
    kind: Literal["dashscope", "openai"] = Field(
        description="dashscope: Qwen-Omni realtime; openai: OpenAI Realtime"
    )
    url: str | None = Field(None, description="default: the provider's public endpoint")
    model: str | None = Field(None, description="default: the provider's realtime model")
    api_key_env: str | None = Field(
        None, description="environment variable holding the key; default per kind"
    )
    voice: str | None = Field(None, description="the model's voice; default: the provider's")

    @model_validator(mode="after")
    def _defaults(self) -> RealtimeProviderConfig:
        url, model, key = REALTIME_DEFAULTS[self.kind]
        self.url = self.url or url
        self.model = self.model or model
        self.api_key_env = self.api_key_env or key
        if not self.url.startswith(("ws://", "wss://")):
            raise ValueError(f"url {self.url!r} must be ws:// or wss://")
        return self


class VadConfig(_Model):
    threshold: float = Field(
        0.5, gt=0.15, lt=1, description="speech probability that starts speech (ends: 0.15 less)"
    )
    min_speech_ms: int = Field(200, ge=32, le=5000, description="speech this long is a turn")
    min_silence_ms: int = Field(500, ge=32, le=10000, description="silence this long ends the turn")


class RealtimeConfig(_Model):
    """``/ws/video`` sessions: the first provider whose API key is set is used."""

    providers: list[RealtimeProviderConfig] = Field(
        default_factory=lambda: [
            RealtimeProviderConfig(kind="dashscope"),
            RealtimeProviderConfig(kind="openai"),
        ],
        description="tried in order: the first whose API key is set is used",
    )
    instructions: str | None = Field(None, max_length=20000, description="system prompt")
    video_fps: float = Field(2.0, gt=0, le=15, description="frames/s forwarded to the model")
    max_frame_bytes: int = Field(2_000_000, ge=10_000, description="one decoded JPEG")
    max_audio_ms: int = Field(1000, ge=32, le=10000, description="audio in one message")
    max_message_bytes: int = Field(
        4_000_000, ge=10_000, description="one WebSocket message; larger: message_too_large"
    )
    max_messages_per_s: float = Field(
        200, gt=0, le=10_000, description="per session; more get a rate_limited error"
    )
    max_bytes_per_s: int = Field(
        4_000_000, ge=10_000, description="per session, averaged over 1 s; more are refused"
    )
    max_sessions: int = Field(
        100, ge=1, le=10000, description="open at once; more: too_many_sessions"
    )
    preroll_ms: int = Field(300, ge=0, le=2000, description="audio kept from before speech")
    vad: VadConfig = Field(default_factory=VadConfig, description="server-side voice activity")


class WebRtcConfig(_Model):
    """WHIP ingest: browsers publish straight to this server (no relay needed)."""

    auto_create: bool = Field(
        False, description="a WHIP publish to an unknown stream id creates a whip:// stream"
    )
    publish_token: str | None = Field(
        None, min_length=8, description="Bearer token for auto-created streams"
    )
    auto_analyzers: list[AnalyzerConfig] = Field(
        default_factory=list, description="analyzers of auto-created streams"
    )
    ice_addresses: list[str] | None = Field(
        None, description="host addresses offered as ICE candidates; null = every interface"
    )
    publisher_timeout_s: float = Field(
        10.0, gt=0, le=600, description="a publisher sending nothing this long is dropped"
    )
    max_offer_bytes: int = Field(65536, ge=1024, description="larger SDP offers get 413")


class BusConfig(_Model):
    """``local``: one process (the default). ``redis``: events and Socket.IO reach every
    node sharing the Redis server."""

    kind: Literal["local", "redis"] = Field(
        "local", description="redis: several nodes share events"
    )
    url: str = Field(
        "redis://127.0.0.1:6379/0", pattern=r"^rediss?://", description="the Redis server"
    )
    channel: str = Field(
        "vlm-monitor",
        pattern=r"^[A-Za-z0-9:_.-]{1,100}$",
        description="prefix of every Redis key and channel; nodes and workers must agree",
    )
    node_id: str | None = Field(None, max_length=100, description="default: host:port")


class WorkerConfig(_Model):
    """The original system's ``stream.tcp`` options for the out-of-process inference worker."""

    use_backend_client: bool = Field(
        True, description="workers read frames through the backend (false is refused)"
    )

    @field_validator("use_backend_client")
    @classmethod
    def _one_connection(cls, value: bool) -> bool:
        if not value:
            raise ValueError(
                "false would have the inference service open the camera itself, a second "
                "connection that a single-connection camera refuses; here the backend keeps "
                "the one connection and workers get frames from it: remove the key or set "
                "it to true"
            )
        return value

    backend_url: str = Field("http://127.0.0.1:8080", description="the backend a worker reads from")
    frame_rate: float = Field(5, gt=0, le=120, description="frames/s a worker asks for")


class Config(_Model):
    server: ServerConfig = Field(
        default_factory=ServerConfig, description="listening, tokens, limits, directories"
    )
    vlm: VlmConfig = Field(default_factory=VlmConfig, description="vision-language models")
    streams: list[StreamConfig] = Field(default_factory=list, description="the video sources")
    flows: list[dict[str, Any]] = Field(
        default_factory=list, description="flow definitions, as the body of POST /api/flows"
    )
    worker: WorkerConfig = Field(
        default_factory=WorkerConfig, description="the original stream.tcp form's worker options"
    )
    analysis: AnalysisConfig = Field(
        default_factory=AnalysisConfig, description="local analyzers and the exam-proctoring calls"
    )
    realtime: RealtimeConfig = Field(
        default_factory=RealtimeConfig, description="realtime video chat (/ws/video)"
    )
    webrtc: WebRtcConfig = Field(default_factory=WebRtcConfig, description="WHIP ingest")
    bus: BusConfig = Field(default_factory=BusConfig, description="events across nodes")
    events: EventsConfig = Field(
        default_factory=EventsConfig, description="incidents a person should see"
    )
    mqtt: MqttConfig | None = Field(
        None, description="MQTT broker and Home Assistant discovery; null = none"
    )
    notify: list[NotifyTarget] = Field(
        default_factory=list, description="notifications of events, through Apprise"
    )

    def secrets(self) -> tuple[str, ...]:
        """Every token and API key this configuration holds or names: never to be logged."""
        values = [self.server.api_token, self.server.viewer_token, self.webrtc.publish_token]
        values += [s.whip_token for s in self.streams]
        keys = [p.api_key_env for p in self.vlm.providers]
        keys += [p.api_key_env for p in self.realtime.providers]
        keys += [self.mqtt.password_env] if self.mqtt is not None else []
        values += [os.environ.get(k) for k in keys if k]
        values += [t.url for t in self.notify]  # Apprise URLs carry their service's tokens
        return tuple(v for v in values if v)

    @model_validator(mode="before")
    @classmethod
    def _seed000_stream(cls, data: Any) -> Any:
        """Accept the original system's ``{"stream": {"type": "tcp", "tcp": {...}}}`` form."""
        if not isinstance(data, dict) or "stream" not in data:
            return data
        data = dict(data)
        legacy = data.pop("stream")
        tcp = legacy.get("tcp", {}) if isinstance(legacy, dict) else {}
        if not isinstance(tcp, dict) or "host" not in tcp or "port" not in tcp:
            raise ValueError("stream.tcp needs host and port")
        name = tcp.get("id", legacy.get("id"))
        if name is None:
            name = "camera"
            log.warning("stream.tcp names no id: the camera is stream 'camera' (set stream.tcp.id)")
        data.setdefault("streams", []).append(
            {"id": str(name), "url": f"tcp://{tcp['host']}:{tcp['port']}"}
        )
        worker = {
            k: tcp[k] for k in ("use_backend_client", "backend_url", "frame_rate") if k in tcp
        }
        data["worker"] = {**data.get("worker", {}), **worker}
        return data

    @model_validator(mode="after")
    def _unique_ids(self) -> Config:
        if len(self.streams) > self.server.max_streams:
            raise ValueError(
                f"streams: {len(self.streams)} configured, server.max_streams is "
                f"{self.server.max_streams}"
            )
        if self.webrtc.auto_create and not self.webrtc.publish_token and self.server.api_token:
            raise ValueError(
                "webrtc.auto_create without webrtc.publish_token would let anyone create "
                "streams on a server that has server.api_token: set webrtc.publish_token"
            )
        if self.analysis.dispatch == "redis" and self.bus.kind != "redis":
            raise ValueError("analysis.dispatch redis needs bus.kind redis")
        for stream in self.streams:
            if stream.clips and stream.clips.dispatch == "redis" and self.bus.kind != "redis":
                raise ValueError(f"streams.{stream.id}.clips.dispatch redis needs bus.kind redis")
        seen: set[str] = set()
        for stream in self.streams:
            if stream.id in seen:
                raise ValueError(f"streams: duplicate id {stream.id!r}")
            seen.add(stream.id)
        return self


def describe_errors(exc: ValidationError) -> list[str]:
    """``"streams.0.url: unsupported scheme 'htp' (got 'htp://x')"`` style messages."""
    out = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = err["msg"].removeprefix("Value error, ")
        value = err.get("input")
        if isinstance(value, str):
            value = redact_url(value)  # a camera URL's password must not reach the console
        shown = "" if isinstance(value, dict | list) else f" (got {value!r})"
        out.append(f"{where}: {msg}{shown}")
    return out


ENV_OVERRIDES = {
    "VLM_MONITOR_HOST": ("host", str),
    "VLM_MONITOR_PORT": ("port", int),
    "VLM_MONITOR_DATA_DIR": ("data_dir", str),
    "VLM_MONITOR_LOG_DIR": ("log_dir", str),
    "VLM_MONITOR_API_TOKEN": ("api_token", str),
}


def build_config(data: dict[str, Any], env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    data = dict(data)
    server = dict(data.get("server") or {})
    for var, (key, kind) in ENV_OVERRIDES.items():
        if var in env:
            try:
                server[key] = kind(env[var])
            except ValueError:
                raise ConfigError(f"{var}: bad value {env[var]!r}") from None
    data["server"] = server
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            "invalid configuration:\n  " + "\n  ".join(describe_errors(exc))
        ) from None


def load_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> Config:
    if path is None:
        return build_config({}, env)
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        # JSON files may carry // and /* */ comments, as the original example config does.
        data = json5.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return build_config(data, env)
