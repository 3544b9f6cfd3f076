"""BackendVideoClient, as the original system named it: an inference service gets frames only
through the backend, never from the camera, which accepts one connection."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import websockets

from vlm_monitor.hub import wire
from vlm_monitor.sources.backoff import backoff_delay

log = logging.getLogger("vlm_monitor.worker")


class BackendError(RuntimeError):
    pass


class BackendVideoClient:
    """Async client of ``/internal/video/*``. ``frames()`` pushes frames over a WebSocket and
    reconnects (with back-off) if the backend goes away; ``latest_frame()`` is the polling way."""

    def __init__(
        self,
        backend_url: str,
        stream: str,
        name: str = "worker",
        frame_rate: float | None = None,
        timeout: float = 10.0,
        token: str | None = None,
    ) -> None:
        """``token``: the backend's ``api_token``, when it has one."""
        self.backend_url = backend_url.rstrip("/")
        self.stream, self.name, self.frame_rate = stream, name, frame_rate
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            base_url=self.backend_url, timeout=timeout, headers=self._headers
        )
        self.reconnects = 0

    async def __aenter__(self) -> BackendVideoClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        resp = await self._http.request(method, path, **kwargs)
        if resp.status_code >= 400:
            raise BackendError(f"{method} {path}: {resp.status_code} {resp.text[:200]}")
        result: dict[str, Any] = resp.json()
        return result

    async def status(self) -> dict[str, Any]:
        return await self._json("GET", "/internal/video/status")

    async def latest_frame(
        self, after_seq: int | None = None, timeout: float = 5.0
    ) -> wire.FrameMessage | None:
        params: dict[str, Any] = {"stream": self.stream, "timeout": timeout}
        if after_seq is not None:
            params["after_seq"] = after_seq
        resp = await self._http.get(
            "/internal/video/latest-frame", params=params, timeout=timeout + 10
        )
        if resp.status_code == 204:
            return None
        if resp.status_code != 200:
            raise BackendError(f"latest-frame: {resp.status_code} {resp.text[:200]}")
        h = resp.headers
        return wire.FrameMessage(
            self.stream,
            int(h["X-Frame-Seq"]),
            float(h["X-Frame-Timestamp"]),
            int(h["X-Frame-Width"]),
            int(h["X-Frame-Height"]),
            resp.content,
        )

    async def frames(self) -> AsyncIterator[wire.FrameMessage]:
        """Frames at ``frame_rate`` (newest first policy), forever; reconnects on failure."""
        failures = 0
        while True:
            try:
                sub = await self._json(
                    "POST",
                    "/internal/video/subscribe",
                    json={"stream": self.stream, "name": self.name, "frame_rate": self.frame_rate},
                )
                ws_url = self.backend_url.replace("http", "ws", 1) + sub["ws_path"]
                async with websockets.connect(
                    ws_url, max_size=32 * 1024 * 1024, additional_headers=self._headers
                ) as ws:
                    log.info(
                        "subscribed",
                        extra={
                            "fields": {
                                "stream": self.stream,
                                "subscription": sub["subscription_id"],
                            }
                        },
                    )
                    failures = 0
                    async for data in ws:
                        if isinstance(data, bytes):
                            yield wire.unpack(data)
            except (
                OSError,
                httpx.HTTPError,
                BackendError,
                websockets.exceptions.WebSocketException,
            ) as exc:
                failures += 1
                self.reconnects += 1
                delay = backoff_delay(failures, 0.5, 10.0, 0.2)
                log.warning(
                    "backend unavailable; retrying",
                    extra={
                        "fields": {
                            "stream": self.stream,
                            "error": str(exc),
                            "retry_in_s": round(delay, 2),
                        }
                    },
                )
                await asyncio.sleep(delay)
            else:
                await asyncio.sleep(backoff_delay(1, 0.5, 10.0, 0.2))
