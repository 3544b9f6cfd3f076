"""Structured logs: ``key=value`` lines on the console, JSON lines in ``logs/<component>.log``.

Call sites pass structured data as ``extra={"fields": {...}}``. Every line is redacted as it
is written, whatever logger it comes from (uvicorn's included): the values of secrets the
server knows, ``token=``-style query parameters, passwords in URLs (``user:password@``), and the
query string of request lines, which browsers use to carry tokens for ``<img>`` and WebSocket.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import re
import sys
import time
from pathlib import Path

_STD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",
}


_SECRET_PARAM = re.compile(
    r"(?i)([?&](?:token|access_token|api_key|apikey|key|password|secret)=)[^&\s\"'#]*"
)
# Camera URLs carry their password as user:password@ (FFmpeg quotes them in its messages).
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]*@")
# uvicorn's access and WebSocket lines: '"GET /path?query HTTP/1.1"', '"WebSocket /path?query"'
_REQUEST_QUERY = re.compile(r'("(?:[A-Z]+|WebSocket) /[^?\s"]*)\?[^\s"]*')


class Redactor:
    """Removes secrets from a log line. ``secrets`` are literal values (tokens from the
    configuration), replaced wherever they appear."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        # Shorter values are not tokens (tokens are >= 8 characters) and would garble lines.
        self.secrets = tuple(sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True))

    def __call__(self, line: str) -> str:
        line = _REQUEST_QUERY.sub(r"\1?<redacted>", line)
        line = _SECRET_PARAM.sub(r"\1***", line)
        line = _URL_PASSWORD.sub(r"\1***@", line)
        for secret in self.secrets:
            line = line.replace(secret, "***")
        return line


def _fields(record: logging.LogRecord) -> dict[str, object]:
    fields = dict(getattr(record, "fields", None) or {})
    for key, value in record.__dict__.items():
        if key not in _STD_ATTRS and key != "fields":
            fields[key] = value
    return fields


class ConsoleFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        parts = [
            f"{stamp}.{int(record.msecs):03d}",
            record.levelname.lower(),
            record.name,
            record.getMessage(),
        ]
        parts += [f"{k}={v}" for k, v in _fields(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return self.redact(line)


class JsonFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return self.redact(json.dumps(doc, default=str))


def setup_logging(
    component: str,
    log_dir: str | Path | None = "logs",
    level: str = "INFO",
    secrets: tuple[str | None, ...] = (),
) -> None:
    """``secrets``: values that must never be written (tokens), whoever logs them."""
    redact = Redactor(tuple(s for s in secrets if s))
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(level.upper())
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(ConsoleFormatter(redact))
    root.addHandler(console)
    if log_dir is not None:
        path = Path(log_dir)
        path.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            path / f"{component}.log", maxBytes=10 * 1024 * 1024, backupCount=3
        )
        handler.setFormatter(JsonFormatter(redact))
        root.addHandler(handler)
    # uvicorn's access log line per MJPEG part or poll would drown everything else.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("libav").setLevel(logging.ERROR)
