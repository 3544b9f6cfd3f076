"""Live view: latest frame as JPEG and a multipart MJPEG stream, at full size or scaled down
(``?width=``) and at a lower rate (``?fps=``). Each frame is encoded once per width, whoever
asks, and the encoded part is shared by every viewer of that size."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response, StreamingResponse

from vlm_monitor.api.deps import ServicesDep, require_stream
from vlm_monitor.services import Services
from vlm_monitor.types import Frame

router = APIRouter()
BOUNDARY = "vlmframe"
# A thumbnail narrower than 64 px shows nothing; wider than 4K is no thumbnail.
Width = Annotated[
    int | None,
    Query(ge=64, le=3840, description="scale down to this many pixels wide (64..3840)"),
]


def frame_headers(frame: Frame, width: int | None = None) -> dict[str, str]:
    shown_w, shown_h = frame.thumbnail_size(width)
    return {
        "X-Frame-Seq": str(frame.seq),
        "X-Frame-Timestamp": f"{frame.ts:.6f}",
        "X-Frame-Width": str(shown_w),
        "X-Frame-Height": str(shown_h),
        "Cache-Control": "no-store",
    }


async def jpeg_response(services: Services, frame: Frame, width: int | None = None) -> Response:
    body = await services.jpeg.encode(frame, width)
    return Response(body, media_type="image/jpeg", headers=frame_headers(frame, width))


@router.get("/api/streams/{stream_id}/frame.jpg")
async def frame_jpg(stream_id: str, services: ServicesDep, width: Width = None) -> Response:
    require_stream(services, stream_id)
    frame = services.hub.latest(stream_id)
    if frame is None:
        raise HTTPException(503, f"stream {stream_id!r} has no frame yet")
    return await jpeg_response(services, frame, width)


def _part(frame: Frame, width: int | None, body: bytes) -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in frame_headers(frame, width).items())
    return (
        (
            f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n{head}\r\n"
        ).encode()
        + body
        + b"\r\n"
    )


@router.get("/api/streams/{stream_id}/mjpeg")
async def mjpeg(
    stream_id: str,
    services: ServicesDep,
    fps: float | None = Query(None, ge=0.2, le=60, description="frames/s (0.2..60)"),
    width: Width = None,
) -> StreamingResponse:
    require_stream(services, stream_id)
    rate = min(fps or services.config.server.mjpeg_fps, services.config.server.mjpeg_fps)
    # Viewers asking for a rate pick frames on one wall-clock grid, so all viewers of a
    # thumbnail wall at 2 fps take the same frames and share their encodes.
    sub = services.hub.subscribe(
        stream_id, "mjpeg", "latest", frame_rate=rate, aligned=fps is not None
    )

    quality = services.jpeg.quality

    async def parts() -> AsyncIterator[bytes]:
        try:
            async for frame in sub:
                body = await services.jpeg.encode(frame, width)
                # The whole part is the same for every viewer of this size: built once.
                key = ("mjpeg-part", quality, frame.thumbnail_size(width))
                yield frame.memo(key, partial(_part, frame, width, body))
        finally:
            services.hub.unsubscribe(sub)

    return StreamingResponse(
        parts(),
        media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
        headers={"Cache-Control": "no-store"},
    )
