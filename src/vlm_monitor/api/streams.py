"""``/api/streams`` CRUD and the exam-proctoring consumer's ``/api/rtsp/*`` calls."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vlm_monitor.api.analysis import set_analyzers
from vlm_monitor.api.deps import ServicesDep
from vlm_monitor.config import STREAM_ID_PATTERN, AnalyzerConfig, StreamConfig, describe_errors
from vlm_monitor.services import Services
from vlm_monitor.sources.manager import StreamExistsError, StreamNotFoundError
from vlm_monitor.sources.url import parse_stream_source, redact_url
from vlm_monitor.storage.paths import opens_inside

router = APIRouter()


@router.get("/api/streams")
async def list_streams(services: ServicesDep) -> list[dict[str, Any]]:
    return services.streams.statuses()


async def _check_api_stream(config: StreamConfig, services: Services) -> None:
    """A stream added over the API: its URL with its settings (``listen``), and, unlike a
    stream from the config file, a file:// source must be a regular file inside
    ``server.media_dir``. Raises HTTPException 422."""
    try:
        source = parse_stream_source(config.url, config.listen)
    except ValueError as exc:
        raise HTTPException(422, f"url: {exc}") from None
    media = services.config.server.media_dir
    # source.path is exactly what FFmpeg opens (its file protocol, links followed).
    if source.scheme == "file" and not await asyncio.to_thread(opens_inside, source.path, media):
        raise HTTPException(
            422,
            f"url: file:// streams added over the API must be regular files inside "
            f"server.media_dir {media}",
        )


@router.post("/api/streams", status_code=201)
async def add_stream(body: StreamConfig, services: ServicesDep) -> dict[str, Any]:
    await _check_api_stream(body, services)
    if body.clips is not None and body.clips.provider is not None:
        names = (
            body.clips.provider if isinstance(body.clips.provider, list) else [body.clips.provider]
        )
        known = {p.name for p in services.config.vlm.providers}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise HTTPException(
                422, f"clips.provider: unknown provider(s) {unknown}; configured: {sorted(known)}"
            )
    try:
        return await services.streams.add(body, persistent=True)
    except StreamExistsError:
        raise HTTPException(409, f"stream {body.id!r} already exists") from None


@router.get("/api/streams/{stream_id}")
async def get_stream(stream_id: str, services: ServicesDep) -> dict[str, Any]:
    try:
        return services.streams.status(stream_id, detail=True)
    except StreamNotFoundError:
        raise HTTPException(404, f"unknown stream {stream_id!r}") from None


@router.delete("/api/streams/{stream_id}")
async def delete_stream(stream_id: str, services: ServicesDep) -> dict[str, Any]:
    try:
        await services.streams.remove(stream_id)
    except StreamNotFoundError:
        raise HTTPException(404, f"unknown stream {stream_id!r}") from None
    return {"id": stream_id, "deleted": True}


class RtspStart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stream_name: str = Field(pattern=STREAM_ID_PATTERN)
    rtsp_url: str | None = Field(None, description="default: {analysis.rtsp_base}/{stream_name}")
    transport: Literal["tcp", "udp", "auto"] = "auto"
    analyzers: list[AnalyzerConfig] | None = Field(
        None,
        description="default: analysis.rtsp_default_analyzers (emotion, heart_rate, attention)",
    )
    session_id: str | None = Field(None, min_length=1, max_length=200)
    student_id: str | None = Field(None, max_length=200)


class RtspStop(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stream_name: str


@router.post("/api/rtsp/start")
async def rtsp_start(body: RtspStart, services: ServicesDep) -> dict[str, Any]:
    """Starts consuming a stream with its analyzers, as the exam-proctoring backend asks.
    Idempotent: starting a stream that already runs from the same URL is a success (and
    applies ``analyzers`` if given)."""
    analyzers = body.analyzers
    if analyzers is None:
        analyzers = services.config.analysis.rtsp_default_analyzers
    url = body.rtsp_url
    if url is None:
        base = services.config.analysis.rtsp_base
        if base is None:
            raise HTTPException(
                422, "rtsp_url is needed: no analysis.rtsp_base (or MEDIAMTX_HOST) is set"
            )
        url = f"{base}/{body.stream_name}"
    try:
        config = StreamConfig(
            id=body.stream_name, url=url, transport=body.transport, analyzers=analyzers
        )
    except ValidationError as exc:
        raise HTTPException(422, "; ".join(describe_errors(exc))) from None
    await _check_api_stream(config, services)
    if body.session_id is not None:
        await services.sessions.bind(body.stream_name, body.session_id, body.student_id)
    if body.stream_name in services.streams:
        running = services.streams.get(body.stream_name).config.url
        if running != url:
            raise HTTPException(
                409, f"stream {body.stream_name!r} already runs from {redact_url(running)}"
            )
        if body.analyzers is not None:
            await set_analyzers(services, body.stream_name, body.analyzers)
        return {
            "success": True,
            "already_running": True,
            "stream_name": body.stream_name,
            "status": services.streams.status(body.stream_name),
        }
    try:
        status = await services.streams.add(config, persistent=True)
    except StreamExistsError:  # lost a race with a concurrent start of the same name
        status = services.streams.status(body.stream_name)
    return {
        "success": True,
        "already_running": False,
        "stream_name": body.stream_name,
        "status": status,
    }


@router.post("/api/rtsp/stop")
async def rtsp_stop(body: RtspStop, services: ServicesDep) -> dict[str, Any]:
    try:
        await services.streams.remove(body.stream_name)
    except StreamNotFoundError:
        raise HTTPException(404, f"unknown stream {body.stream_name!r}") from None
    return {"success": True, "stream_name": body.stream_name}


@router.get("/api/rtsp/status")
async def rtsp_status(services: ServicesDep) -> dict[str, Any]:
    statuses = services.streams.statuses()
    return {
        "active_streams": sum(1 for s in statuses if s["state"] == "live"),
        "analyzing_streams": sum(1 for s in statuses if s["analyzers"]),
        "streams": {s["id"]: s for s in statuses},
    }
