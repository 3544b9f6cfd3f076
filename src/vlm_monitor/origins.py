"""Which browser origins may talk to this server: one rule for the HTTP guard, WebSocket
handshakes and Socket.IO, so they cannot disagree."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit


def origin_allowed(origin: str, host: str, cors_origins: Sequence[str]) -> bool:
    """This server's own origin (its ``Host``, whatever the scheme), one listed in
    ``server.cors_origins``, or any when that list holds ``"*"`` (as Starlette's CORS reads
    it)."""
    return urlsplit(origin).netloc == host or origin in cors_origins or "*" in cors_origins
