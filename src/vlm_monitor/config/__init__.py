"""Configuration: one YAML or JSON file, validated by pydantic with messages naming the bad key.
Each section lives in its own module; everything is importable from here."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import json5
import yaml
from pydantic import Field, ValidationError, model_validator

from vlm_monitor.config.base import (
    STREAM_ID_PATTERN,
    ConfigError,
    SizeText,
    _Model,
    describe_errors,
    parse_size,
)
from vlm_monitor.config.server import ServerConfig
from vlm_monitor.config.services import (
    REALTIME_DEFAULTS,
    BusConfig,
    RealtimeConfig,
    RealtimeProviderConfig,
    VadConfig,
    WebRtcConfig,
    WorkerConfig,
)
from vlm_monitor.config.streams import (
    AnalyzerConfig,
    BudgetConfig,
    ClipsConfig,
    DedupeConfig,
    ReconnectConfig,
    StreamConfig,
)
from vlm_monitor.config.vlm import AnalysisConfig, AuditConfig, VlmConfig, VlmProviderConfig
from vlm_monitor.config_events import EventsConfig, MqttConfig, NotifyTarget
from vlm_monitor.vlm.reference import read_reference

log = logging.getLogger("vlm_monitor.config")

__all__ = [
    "REALTIME_DEFAULTS",
    "STREAM_ID_PATTERN",
    "AnalysisConfig",
    "AnalyzerConfig",
    "AuditConfig",
    "BudgetConfig",
    "BusConfig",
    "ClipsConfig",
    "Config",
    "ConfigError",
    "DedupeConfig",
    "RealtimeConfig",
    "RealtimeProviderConfig",
    "ReconnectConfig",
    "ServerConfig",
    "SizeText",
    "StreamConfig",
    "VadConfig",
    "VlmConfig",
    "VlmProviderConfig",
    "WebRtcConfig",
    "WorkerConfig",
    "build_config",
    "describe_errors",
    "load_config",
    "parse_size",
]


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
    def _original_stream_tcp(cls, data: Any) -> Any:
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
            if stream.reference_frame is not None:
                try:
                    read_reference(stream.reference_frame)
                except (OSError, ValueError) as exc:
                    raise ValueError(f"streams.{stream.id}.reference_frame: {exc}") from None
        return self


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
