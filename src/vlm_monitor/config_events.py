"""Configuration of what reaches people: incidents (``events``), MQTT (``mqtt``) and
notifications (``notify``)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventsConfig(_Model):
    """Incidents (``GET /api/events``): how long they stay open and how many are kept."""

    idle_close_s: float = Field(
        120.0, gt=0, le=86400, description="an open incident nobody updates this long is closed"
    )
    keep_days: float = Field(30.0, gt=0, description="closed incidents older than this go")
    keep_max: int = Field(10_000, ge=10, description="incidents kept at most (oldest pruned)")
    snapshot_quality: int = Field(85, ge=10, le=100, description="snapshot JPEG quality")
    clips: bool = Field(
        True, description="keep an MP4 per event (demuxed sources: rtsp, tcp, http, file)"
    )
    preroll_s: float = Field(5.0, ge=0, le=60, description="clip seconds before the event")
    postroll_s: float = Field(5.0, ge=0, le=120, description="clip seconds after it opened")
    max_evidence_mb: float = Field(
        2000.0, gt=0, description="snapshots and clips kept in all, MB (oldest deleted first)"
    )
    min_free_mb: float = Field(
        200.0,
        ge=0,
        description="less free disk than this: events are kept without snapshot or clip, MB",
    )


Action = Literal["open", "update", "close"]


def _open_only() -> list[Action]:
    return ["open"]


TOPIC_WORD = r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$"


class MqttConfig(_Model):
    """An MQTT broker: events, stream states, snapshots and analyzer readings are published
    there, with Home Assistant discovery."""

    url: str = Field(description="mqtt://HOST[:1883] (mqtts:// for TLS, default port 8883)")
    topic_prefix: str = Field(
        "vlm-monitor", pattern=TOPIC_WORD, description="first level of every topic"
    )
    discovery_prefix: str = Field(
        "homeassistant", pattern=TOPIC_WORD, description="Home Assistant's discovery prefix"
    )
    username: str | None = Field(None, max_length=200, description="broker user")
    password_env: str | None = Field(
        None, max_length=200, description="environment variable holding the broker password"
    )
    queue_max: int = Field(
        1000, ge=10, le=1_000_000, description="messages held while the broker is away"
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        mqtt_address(value)
        return value


def mqtt_address(url: str) -> tuple[str, int, bool]:
    """``(host, port, tls)`` of an ``mqtt://`` or ``mqtts://`` URL; ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"{url!r}: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r}: the port is not a number from 1 to 65535") from None
    tls = parts.scheme == "mqtts"
    return parts.hostname, port or (8883 if tls else 1883), tls


class NotifyTarget(_Model):
    """One notification target: an Apprise URL (ntfy, Telegram, e-mail, Slack, webhooks...)
    and which events reach it."""

    url: str = Field(
        min_length=3, max_length=2000, description="an Apprise URL, e.g. json://host/path"
    )
    kinds: list[str] = Field(default_factory=list, description="event kinds; empty = all")
    streams: list[str] = Field(default_factory=list, description="stream ids; empty = all")
    min_severity: Literal["info", "warning", "critical"] = Field(
        "warning", description="events below this severity are not sent"
    )
    on: list[Action] = Field(
        default_factory=_open_only, description="which changes of an event are sent"
    )
    cooldown_s: float = Field(
        60.0, ge=0, description="per stream and kind: no second notification before this"
    )
    attempts: int = Field(3, ge=1, le=10, description="tries per notification")
    retry_s: float = Field(2.0, ge=0, le=300, description="first retry delay (doubles), seconds")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        import apprise  # only configurations with notifications pay for its import

        if not apprise.Apprise().add(value):
            raise ValueError("not an Apprise URL this server can send to (see Apprise's list)")
        return value

    @field_validator("kinds")
    @classmethod
    def _check_kinds(cls, value: list[str]) -> list[str]:
        from vlm_monitor.types import EVENT_KINDS as KINDS

        unknown = [k for k in value if k not in KINDS]
        if unknown:
            raise ValueError(f"unknown kind(s) {unknown}: one of {', '.join(KINDS)}")
        return value
