"""``/api/results``: stored analysis results, newest first, and their clips while retained."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse

from vlm_monitor.api.deps import ServicesDep

router = APIRouter()


@router.get("/api/results")
async def list_results(
    services: ServicesDep, stream: str | None = Query(None), limit: int = Query(50, ge=1, le=1000)
) -> list[dict[str, Any]]:
    return await services.store.results(stream, limit)


@router.get("/api/results/{result_id}")
async def get_result(result_id: int, services: ServicesDep) -> dict[str, Any]:
    doc = await services.store.result(result_id)
    if doc is None:
        raise HTTPException(404, f"unknown result {result_id}")
    return doc


@router.get("/api/results/{result_id}/clip")
async def get_clip(result_id: int, services: ServicesDep) -> FileResponse:
    doc = await services.store.result(result_id)
    if doc is None:
        raise HTTPException(404, f"unknown result {result_id}")
    path = services.clips.clip_path(doc["stream"], doc["video_info"]["clip_id"])
    if path is None:
        raise HTTPException(410, f"the clip of result {result_id} is no longer retained")
    return FileResponse(path, media_type="video/mp4", filename=path.name)


@router.get("/api/providers")
async def providers(services: ServicesDep) -> dict[str, Any]:
    return services.clips.provider_status()
