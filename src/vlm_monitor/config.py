"""Configuration: one YAML or JSON file, validated by pydantic with messages naming the bad key."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vlm_monitor.sources.url import parse_source_url

STREAM_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class ConfigError(ValueError):
    """A configuration file or body that cannot be used; the message names key and value."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    api_token: str | None = None
    data_dir: str = "./data"
    log_dir: str = "./logs"
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


class StreamConfig(_Model):
    id: str = Field(pattern=STREAM_ID_PATTERN)
    url: str
    transport: Literal["tcp", "udp", "auto"] = Field(
        "auto", description="RTSP transport; auto tries TCP, then UDP"
    )
    loop: bool = Field(True, description="file:// sources restart at the end")
    analysis_size: str | None = Field("640x360", description="shared downscale for analyzers")
    stall_timeout_s: float = Field(5.0, gt=0, description="no frame for this long: reconnect")
    open_timeout_s: float = Field(5.0, gt=0)
    decode_threads: int = Field(1, ge=0, le=16, description="0 = FFmpeg decides")
    reconnect: ReconnectConfig = Field(default_factory=ReconnectConfig)
    analyzers: list[str] = Field(default_factory=list)
    clips: dict[str, Any] | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parse_source_url(value)
        return value

    @field_validator("analysis_size")
    @classmethod
    def _check_size(cls, value: str | None) -> str | None:
        if value is not None:
            parse_size(value)
        return value

    @property
    def analysis_dims(self) -> tuple[int, int] | None:
        return parse_size(self.analysis_size) if self.analysis_size else None


class VlmProviderConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    kind: Literal["openai", "dashscope", "local"]
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None


class VlmConfig(_Model):
    providers: list[VlmProviderConfig] = Field(default_factory=list)


class WorkerConfig(_Model):
    """Seed 000's ``stream.tcp`` options for the out-of-process inference worker."""

    use_backend_client: bool = True
    backend_url: str = "http://127.0.0.1:8080"
    frame_rate: float = Field(5, gt=0, le=120)


class Config(_Model):
    server: ServerConfig = Field(default_factory=ServerConfig)
    vlm: VlmConfig = Field(default_factory=VlmConfig)
    streams: list[StreamConfig] = Field(default_factory=list)
    flows: list[dict[str, Any]] = Field(default_factory=list)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)

    @model_validator(mode="before")
    @classmethod
    def _seed000_stream(cls, data: Any) -> Any:
        """Accept seed 000's ``{"stream": {"type": "tcp", "tcp": {...}}}`` form."""
        if not isinstance(data, dict) or "stream" not in data:
            return data
        data = dict(data)
        legacy = data.pop("stream")
        tcp = legacy.get("tcp", {}) if isinstance(legacy, dict) else {}
        if not isinstance(tcp, dict) or "host" not in tcp or "port" not in tcp:
            raise ValueError("stream.tcp needs host and port")
        data.setdefault("streams", []).append(
            {"id": str(legacy.get("id", "camera")), "url": f"tcp://{tcp['host']}:{tcp['port']}"}
        )
        worker = {
            k: tcp[k] for k in ("use_backend_client", "backend_url", "frame_rate") if k in tcp
        }
        data["worker"] = {**data.get("worker", {}), **worker}
        return data

    @model_validator(mode="after")
    def _unique_ids(self) -> Config:
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
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return build_config(data, env)
