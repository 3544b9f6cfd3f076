"""What every configuration section shares: the base model, sizes, errors that name the key."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    ValidationError,
)

from vlm_monitor.sources.url import redact_url

STREAM_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class ConfigError(ValueError):
    """A configuration file or body that cannot be used; the message names key and value."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
