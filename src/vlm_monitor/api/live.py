"""Live view: latest frame as JPEG and a multipart MJPEG stream, shared JPEG per frame."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response, StreamingResponse

from vlm_monitor.api.deps import ServicesDep, require_stream
from vlm_monitor.services import Services
from vlm_monitor.types import Frame

router = APIRouter()
BOUNDARY = "vlmframe"


def frame_headers(frame: Frame) -> dict[str, str]:
    return {
        "X-Frame-Seq": str(frame.seq),
        "X-Frame-Timestamp": f"{frame.ts:.6f}",
        "X-Frame-Width": str(frame.width),
        "X-Frame-Height": str(frame.height),
        "Cache-Control": "no-store",
    }


async def jpeg_response(services: Services, frame: Frame) -> Response:
    body = await services.jpeg.encode(frame)
    return Response(body, media_type="image/jpeg", headers=frame_headers(frame))


@router.get("/api/streams/{stream_id}/frame.jpg")
async def frame_jpg(stream_id: str, services: ServicesDep) -> Response:
    require_stream(services, stream_id)
    frame = services.hub.latest(stream_id)
    if frame is None:
        raise HTTPException(503, f"stream {stream_id!r} has no frame yet")
    return await jpeg_response(services, frame)


def _part(frame: Frame, body: bytes) -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in frame_headers(frame).items())
    return (
        (
            f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n{head}\r\n"
        ).encode()
        + body
        + b"\r\n"
    )


@router.get("/api/streams/{stream_id}/mjpeg")
async def mjpeg(
    stream_id: str, services: ServicesDep, fps: float | None = Query(None, gt=0, le=60)
) -> StreamingResponse:
    require_stream(services, stream_id)
    rate = min(fps or services.config.server.mjpeg_fps, services.config.server.mjpeg_fps)
    sub = services.hub.subscribe(stream_id, "mjpeg", "latest", frame_rate=rate)

    quality = services.jpeg.quality

    async def parts() -> AsyncIterator[bytes]:
        try:
            async for frame in sub:
                body = await services.jpeg.encode(frame)
                # The whole part is the same for every viewer: built once per frame.
                yield frame.memo(("mjpeg-part", quality), partial(_part, frame, body))
        finally:
            services.hub.unsubscribe(sub)

    return StreamingResponse(
        parts(),
        media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
        headers={"Cache-Control": "no-store"},
    )
