"""``realtime`` (the /ws/video chat), ``webrtc``, ``bus`` (several nodes) and ``worker``."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from vlm_monitor.config.base import _Model
from vlm_monitor.config.streams import AnalyzerConfig

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
