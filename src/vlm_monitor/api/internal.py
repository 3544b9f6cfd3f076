"""``/internal/video/*``: how out-of-process workers get frames, only from here: the camera
keeps its one connection, to the backend."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, HTTPException, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from vlm_monitor.api.deps import ServicesDep, stream_or_only
from vlm_monitor.api.live import jpeg_response
from vlm_monitor.hub import wire

router = APIRouter(prefix="/internal/video")


@router.get("/latest-frame")
async def latest_frame(
    services: ServicesDep,
    stream: str | None = Query(None, description="default: the only stream, if there is one"),
    after_seq: int | None = Query(None, ge=0),
    timeout: float = Query(5.0, ge=0, le=60),
) -> Response:
    """Newest frame; with ``after_seq``, waits up to ``timeout`` s for a newer one (204 if none)."""
    stream = stream_or_only(services, stream)
    frame = services.hub.latest(stream)
    floor = after_seq if after_seq is not None else 0
    if frame is None or frame.seq <= floor:
        sub = services.hub.subscribe(stream, "latest-frame-poll", "latest")
        deadline = time.monotonic() + timeout
        try:
            frame = services.hub.latest(stream)  # may have arrived while subscribing
            while frame is None or frame.seq <= floor:
                remaining = deadline - time.monotonic()
                frame = await sub.next(remaining) if remaining > 0 else None
                if frame is None:
                    return Response(status_code=204)
        finally:
            services.hub.unsubscribe(sub)
    return await jpeg_response(services, frame)


@router.get("/status")
async def status(services: ServicesDep) -> dict[str, Any]:
    streams = services.streams.statuses()
    return {
        "streams": {s["id"]: s for s in streams},
        "subscriptions": [s.status() for s in services.remote.all()],
    }


class SubscribeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stream: str | None = Field(None, description="default: the only stream, if there is one")
    name: str = Field("worker", min_length=1, max_length=64)
    frame_rate: float | None = Field(None, gt=0, le=120)


@router.post("/subscribe", status_code=201)
async def subscribe(services: ServicesDep, body: SubscribeBody | None = None) -> dict[str, Any]:
    body = body or SubscribeBody()
    stream = stream_or_only(services, body.stream)
    sub = services.remote.create(stream, body.name, body.frame_rate)
    return {
        **sub.status(),
        "ws_path": f"/internal/video/ws/{sub.id}",
        "format": "binary: u32be header length, JSON header, JPEG",
    }


@router.delete("/subscribe/{subscription_id}")
async def unsubscribe(subscription_id: str, services: ServicesDep) -> dict[str, Any]:
    if services.remote.remove(subscription_id) is None:
        raise HTTPException(404, f"unknown subscription {subscription_id!r}")
    return {"subscription_id": subscription_id, "deleted": True}


@router.websocket("/ws/{subscription_id}")
async def push_frames(websocket: WebSocket, subscription_id: str, services: ServicesDep) -> None:
    remote = services.remote.get(subscription_id)
    if remote is None or remote.stream not in services.streams:
        await websocket.close(code=4404, reason="unknown subscription or stream")
        return
    if remote.connected:
        await websocket.close(code=4409, reason="subscription already has a connection")
        return
    await websocket.accept()
    remote.connected = True
    sub = services.hub.subscribe(
        remote.stream, f"remote:{remote.name}", "latest", frame_rate=remote.frame_rate
    )
    try:
        async for frame in sub:
            jpeg = await services.jpeg.encode(frame)
            await websocket.send_bytes(
                wire.pack(
                    wire.FrameMessage(
                        frame.stream_id,
                        frame.seq,
                        frame.ts,
                        frame.width,
                        frame.height,
                        jpeg,
                        frame.capture_ts,
                    )
                )
            )
            remote.delivered += 1
            remote.last_seq = frame.seq
        await websocket.close(code=1001, reason="stream removed")
    except WebSocketDisconnect:
        pass
    finally:
        remote.connected = False
        services.hub.unsubscribe(sub)
