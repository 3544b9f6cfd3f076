"""``server``: the HTTP side, its limits and who may reach it."""

from __future__ import annotations

from pydantic import (
    Field,
)

from vlm_monitor.config.base import _Model


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
