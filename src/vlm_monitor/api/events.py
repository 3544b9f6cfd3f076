"""``WS /ws/events``: every event as JSON, the moment it exists."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from vlm_monitor.api.deps import ServicesDep
from vlm_monitor.types import Event

router = APIRouter()


@router.websocket("/ws/events")
async def events(websocket: WebSocket, services: ServicesDep) -> None:
    await websocket.accept()
    listener = services.bus.listen()
    # A new listener first gets the current state of every stream, then live changes.
    for status in services.streams.statuses():
        listener.put(Event("stream.state", status["id"], status).to_json())

    async def drain_incoming() -> None:
        # Clients send nothing we act on; reading notices a disconnect at once.
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await websocket.receive_text()

    reader = asyncio.create_task(drain_incoming())
    try:
        while not reader.done():
            getter = asyncio.ensure_future(listener.get())
            done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            await websocket.send_json(getter.result())
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        services.bus.unlisten(listener)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
            await reader
