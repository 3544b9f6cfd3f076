"""``/api/events``: incidents (motion, alerts, attention, streams offline), newest first, with
full-text search, the snapshot and clip that show each, and acknowledgement."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi import Path as FastApiPath
from fastapi.responses import FileResponse, Response

from vlm_monitor.api.deps import ServicesDep
from vlm_monitor.events.model import KINDS

router = APIRouter()
EventId = Annotated[str, FastApiPath(pattern=r"^[0-9a-f]{1,32}$")]


@router.get("/api/events")
async def list_events(
    services: ServicesDep,
    stream: str | None = Query(None, max_length=64),
    kind: str | None = Query(None, description=f"one of {', '.join(KINDS)}"),
    since: float | None = Query(None, description="unix seconds: updated at or after"),
    q: str | None = Query(None, max_length=500, description="words in title, summary, VLM text"),
    limit: int = Query(100, ge=1, le=1000),
    state: Literal["open", "closed"] | None = Query(None, description="open or closed only"),
) -> list[dict[str, Any]]:
    if kind is not None and kind not in KINDS:
        raise HTTPException(422, f"kind: one of {', '.join(KINDS)}")
    store = services.events.store
    return await asyncio.to_thread(store.query, stream, kind, since, q, limit, state)


@router.get("/api/events/counts")
async def event_counts(services: ServicesDep) -> dict[str, dict[str, int]]:
    """By stream: ``{"cam1": {"unacknowledged": 3, "open": 1, "total": 12}}``; streams with
    no event kept are absent."""
    return await asyncio.to_thread(services.events.store.counts)


@router.get("/api/events/{event_id}")
async def get_event(services: ServicesDep, event_id: EventId) -> dict[str, Any]:
    doc = await asyncio.to_thread(services.events.store.get, event_id)
    if doc is None:
        raise HTTPException(404, f"unknown event {event_id!r}")
    return doc


@router.get(
    "/api/events/{event_id}/snapshot.jpg",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "no snapshot"}},
)
async def event_snapshot(services: ServicesDep, event_id: EventId) -> Response:
    jpeg = await asyncio.to_thread(services.events.snapshots.read, event_id)
    if jpeg is None:
        raise HTTPException(404, f"no snapshot for event {event_id!r}")
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})


@router.get(
    "/api/events/{event_id}/clip.mp4",
    response_class=FileResponse,
    responses={200: {"content": {"video/mp4": {}}}, 404: {"description": "no clip"}},
)
async def event_clip(services: ServicesDep, event_id: EventId) -> FileResponse:
    path = services.events.snapshots.clip_path(event_id)
    if not await asyncio.to_thread(path.is_file):
        raise HTTPException(404, f"no clip for event {event_id!r}")
    return FileResponse(path, media_type="video/mp4")


@router.post("/api/events/{event_id}/ack")
async def acknowledge_event(services: ServicesDep, event_id: EventId) -> dict[str, Any]:
    doc = await services.events.acknowledge(event_id)
    if doc is None:
        raise HTTPException(404, f"unknown event {event_id!r}")
    return doc
