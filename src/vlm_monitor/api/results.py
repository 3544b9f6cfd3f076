"""``/api/results``: stored analysis results, newest first, and their clips while retained."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi import Path as FastApiPath
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vlm_monitor.api.deps import ServicesDep, require_stream

router = APIRouter()
ResultId = Annotated[int, FastApiPath(ge=1, le=2**63 - 1)]  # SQLite's integer range
CLIP_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
MAX_DETAIL_BYTES = 65536  # video_info and extra fields, as JSON: metadata, not payloads


@router.get("/api/results")
async def list_results(
    services: ServicesDep, stream: str | None = Query(None), limit: int = Query(50, ge=1, le=1000)
) -> list[dict[str, Any]]:
    return await services.store.results(stream, limit)


class ResultIn(BaseModel):
    """A result computed elsewhere (``vlm-monitor worker --clips``): ResultData's JSON."""

    model_config = ConfigDict(extra="allow")
    stream: str = Field(min_length=1, max_length=64)
    result: str = Field(max_length=100_000)
    error: str | None = Field(None, max_length=10_000)
    video_info: dict[str, Any]
    inference_start_time: float
    inference_end_time: float

    @field_validator("video_info")
    @classmethod
    def _clip_id(cls, value: dict[str, Any]) -> dict[str, Any]:
        # It names a file (GET .../clip): a plain name, nothing that walks directories.
        clip_id = value.get("clip_id")
        if clip_id is not None and not (isinstance(clip_id, str) and CLIP_ID.fullmatch(clip_id)):
            raise ValueError("clip_id must be a plain file name: letters, digits, _ . -")
        return value

    @model_validator(mode="after")
    def _small(self) -> ResultIn:
        detail = {"video_info": self.video_info, **(self.model_extra or {})}
        size = len(json.dumps(detail, default=str))
        if size > MAX_DETAIL_BYTES:
            raise ValueError(
                f"video_info and extra fields take {size} bytes as JSON, "
                f"over {MAX_DETAIL_BYTES}: send metadata, not payloads"
            )
        return self


@router.post("/api/results", status_code=201)
async def post_result(body: ResultIn, services: ServicesDep) -> dict[str, Any]:
    """From out-of-process clip workers; the API token is checked by the guard."""
    require_stream(services, body.stream)
    doc = body.model_dump()
    doc.pop("id", None)
    await asyncio.to_thread(services.results.clip, doc, "worker")
    return {"id": doc["id"]}


@router.get("/api/results/{result_id}")
async def get_result(result_id: ResultId, services: ServicesDep) -> dict[str, Any]:
    doc = await services.store.result(result_id)
    if doc is None:
        raise HTTPException(404, f"unknown result {result_id}")
    return doc


@router.get("/api/results/{result_id}/clip")
async def get_clip(result_id: ResultId, services: ServicesDep) -> FileResponse:
    doc = await services.store.result(result_id)
    if doc is None:
        raise HTTPException(404, f"unknown result {result_id}")
    clip_id = (doc.get("video_info") or {}).get("clip_id")
    if not isinstance(clip_id, str):
        raise HTTPException(404, f"result {result_id} has no clip")
    path = services.clips.clip_path(doc["stream"], clip_id)
    if path is None:
        raise HTTPException(410, f"the clip of result {result_id} is no longer retained")
    return FileResponse(path, media_type="video/mp4", filename=path.name)


@router.get("/api/providers")
async def providers(services: ServicesDep) -> dict[str, Any]:
    return await asyncio.to_thread(services.provider_status, True)


@router.get("/api/budgets")
async def budgets(services: ServicesDep) -> dict[str, Any]:
    return await asyncio.to_thread(services.budget_status)
