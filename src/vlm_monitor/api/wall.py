"""The proctor's wall: the ``/wall`` page and ``WS /ws/wall``, every tile's thumbnail over
one socket.

Browsers open at most six HTTP/1.1 connections to one server, so a wall of 32 MJPEG
``<img>``s shows six pictures and leaves the rest waiting; one WebSocket carries them all.
The browser says which streams it shows (``{"streams": [...]}``, again whenever that
changes: a filter, a scroll); the server sends each one's thumbnail as a binary message in
the frame push channel's format (``hub/wire.py``), at ``fps`` and ``width``. Thumbnails are the
live view's (``?fps=&width=``): picked on one wall-clock grid and encoded once per frame and
width, so a second wall, or an MJPEG viewer of the same size, costs no encode.
"""

from __future__ import annotations

import asyncio
import json
from functools import partial
from importlib import resources

from fastapi import APIRouter, Query, WebSocket
from fastapi.responses import HTMLResponse

from vlm_monitor.api.deps import ServicesDep
from vlm_monitor.hub import wire
from vlm_monitor.services import Services
from vlm_monitor.types import Frame

router = APIRouter()
MAX_STREAM_ID = 64  # characters, as stream ids are


@router.get("/wall", response_class=HTMLResponse)
async def wall_page() -> str:
    return (resources.files("vlm_monitor") / "web" / "wall.html").read_text()


def wanted_streams(text: str, limit: int) -> list[str]:
    """The stream ids of a ``{"streams": [...]}`` message; ValueError says what is wrong."""
    try:
        doc = json.loads(text)
    except ValueError:
        raise ValueError('send JSON: {"streams": [stream ids]}') from None
    streams = doc.get("streams") if isinstance(doc, dict) else None
    if not isinstance(streams, list) or not all(
        isinstance(s, str) and 0 < len(s) <= MAX_STREAM_ID for s in streams
    ):
        raise ValueError("streams: a list of stream ids")
    if len(streams) > limit:
        raise ValueError(f"streams: at most {limit}")
    return list(dict.fromkeys(streams))


class WallChannel:
    """One browser's thumbnails. Each stream has a latest-only subscription and one pending
    message slot: a browser that reads slowly gets the newest picture of every tile, never a
    backlog, and one slow stream never holds back the others. Lives on the event loop."""

    def __init__(self, services: Services, ws: WebSocket, fps: float, width: int) -> None:
        self.services, self.ws, self.fps, self.width = services, ws, fps, width
        self.followers: dict[str, asyncio.Task[None]] = {}
        self.pending: dict[str, bytes] = {}
        self.ready = asyncio.Event()

    def _message(self, frame: Frame, jpeg: bytes) -> bytes:
        shown_w, shown_h = frame.thumbnail_size(self.width)
        return wire.pack(
            wire.FrameMessage(frame.stream_id, frame.seq, frame.ts, shown_w, shown_h, jpeg)
        )

    async def _follow(self, stream: str) -> None:
        hub, encoder = self.services.hub, self.services.jpeg
        sub = hub.subscribe(stream, "wall", "latest", frame_rate=self.fps, aligned=True)
        try:
            async for frame in sub:
                jpeg = await encoder.encode(frame, self.width)
                key = ("wall-message", encoder.quality, frame.thumbnail_size(self.width))
                self.pending[stream] = frame.memo(key, partial(self._message, frame, jpeg))
                self.ready.set()
        finally:
            hub.unsubscribe(sub)

    def show(self, streams: list[str]) -> list[str]:
        """Follows exactly these streams from now on; returns the ids that are unknown."""
        known = [s for s in streams if s in self.services.streams]
        for stream in set(self.followers) - set(known):
            self.followers.pop(stream).cancel()
            self.pending.pop(stream, None)
        for stream in known:
            task = self.followers.get(stream)
            if task is None or task.done():  # done: the stream was removed and came back
                self.followers[stream] = asyncio.create_task(self._follow(stream))
        return [s for s in streams if s not in self.services.streams]

    async def _send(self) -> None:
        while True:
            await self.ready.wait()
            self.ready.clear()
            while self.pending:
                stream = next(iter(self.pending))
                await self.ws.send_bytes(self.pending.pop(stream))

    async def _receive(self) -> None:
        limit = self.services.config.server.max_streams
        while True:
            text = await self.ws.receive_text()
            try:
                unknown = self.show(wanted_streams(text, limit))
            except ValueError as exc:
                await self.ws.send_json({"type": "error", "message": str(exc)})
                continue
            if unknown:
                message = f"unknown streams: {', '.join(unknown)}"
                await self.ws.send_json({"type": "error", "message": message, "unknown": unknown})

    async def run(self) -> None:
        tasks = [asyncio.create_task(self._send()), asyncio.create_task(self._receive())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            everything = [*tasks, *self.followers.values()]
            for task in everything:
                task.cancel()
            # A closed socket ends the senders with its own error: nothing left to tell.
            await asyncio.gather(*everything, return_exceptions=True)


@router.websocket("/ws/wall")
async def wall_channel(
    websocket: WebSocket,
    services: ServicesDep,
    fps: float = Query(2.0, ge=0.2, le=60),
    width: int = Query(240, ge=64, le=3840),
) -> None:
    await websocket.accept()
    rate = min(fps, services.config.server.mjpeg_fps)
    await WallChannel(services, websocket, rate, width).run()
