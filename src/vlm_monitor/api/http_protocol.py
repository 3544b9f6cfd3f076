"""uvicorn's HTTP protocol with a deadline for request headers.

uvicorn times out idle keep-alive connections, but not a request whose headers arrive one
line at a time: a client trickling a header every few seconds holds a socket (and a file
descriptor) for ever, and a thousand such clients exhaust the server. Here a connection that
has not finished a request's headers ``header_timeout`` seconds after it opened (or, on a
kept-alive connection, after the next request's first byte) is answered 408 and closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("vlm_monitor.http")


class HeaderDeadlineProtocol(HttpToolsProtocol):
    header_timeout: float = 10.0
    refused: Counter[str] | None = None  # shared with /metrics (vlm_http_refused_total)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_deadline is None:  # the next request on a kept-alive connection
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def _arm(self) -> None:
        self._header_deadline = self.loop.call_later(self.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _expired(self) -> None:
        self._header_deadline = None
        if self.transport.is_closing():
            return
        if self.refused is not None:
            self.refused["408"] += 1
        log.debug("request headers too slow", extra={"fields": {"client": self.client}})
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )
        self.transport.close()


def protocol_class(header_timeout: float, refused: Counter[str]) -> type[HeaderDeadlineProtocol]:
    """A subclass carrying this server's settings: uvicorn builds protocols from a class."""
    return type(
        "ServerHttpProtocol",
        (HeaderDeadlineProtocol,),
        {"header_timeout": header_timeout, "refused": refused},
    )
