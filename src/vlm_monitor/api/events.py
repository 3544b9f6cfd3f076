"""``WS /ws/events[?since_seq=N]``: every event as JSON, the moment it exists."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect

from vlm_monitor.api.deps import ServicesDep

router = APIRouter()
SLOW_CLIENT_CLOSE = 4008  # application close code: the client fell too far behind


@router.websocket("/ws/events")
async def events(
    websocket: WebSocket, services: ServicesDep, since_seq: int | None = Query(None, ge=0)
) -> None:
    await websocket.accept()
    bus = services.bus
    listener, complete = bus.listen(since_seq)
    # A new client first gets a snapshot of every stream's state (not in the sequence),
    # then the missed events it asked for, then live ones.
    await websocket.send_json(
        {
            "type": "hello",
            "stream": None,
            "seq": bus.last_seq,
            "resumed": since_seq is not None,
            "complete": complete,
            "streams": services.streams.statuses(),
        }
    )

    async def drain_incoming() -> None:
        # Clients send nothing we act on; reading notices a disconnect at once.
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await websocket.receive_text()

    reader = asyncio.create_task(drain_incoming())
    overflow = asyncio.create_task(listener.overflowed.wait())
    try:
        while not reader.done():
            getter = asyncio.ensure_future(listener.get())
            done, _ = await asyncio.wait(
                {getter, reader, overflow}, return_when=asyncio.FIRST_COMPLETED
            )
            if getter not in done:
                getter.cancel()
                if overflow in done:
                    await websocket.close(
                        SLOW_CLIENT_CLOSE, f"too slow: reconnect with since_seq={listener.last_seq}"
                    )
                break
            await websocket.send_json(getter.result())
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        bus.unlisten(listener)
        for task in (reader, overflow):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
            await reader
