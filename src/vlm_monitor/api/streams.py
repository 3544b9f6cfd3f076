"""``/api/streams`` CRUD and the exam-proctoring consumer's ``/api/rtsp/*`` calls."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from vlm_monitor.api.deps import ServicesDep
from vlm_monitor.config import STREAM_ID_PATTERN, AnalyzerConfig, StreamConfig

router = APIRouter()


@router.get("/api/streams")
async def list_streams(services: ServicesDep) -> list[dict[str, Any]]:
    return services.streams.statuses()


@router.post("/api/streams", status_code=201)
async def add_stream(body: StreamConfig, services: ServicesDep) -> dict[str, Any]:
    return await services.control.add(body)


@router.get("/api/streams/{stream_id}")
async def get_stream(stream_id: str, services: ServicesDep) -> dict[str, Any]:
    return services.streams.status(stream_id, detail=True)


@router.delete("/api/streams/{stream_id}")
async def delete_stream(stream_id: str, services: ServicesDep) -> dict[str, Any]:
    await services.streams.remove(stream_id)
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
    already, status = await services.control.rtsp_start(
        body.stream_name,
        body.rtsp_url,
        body.transport,
        body.analyzers,
        body.session_id,
        body.student_id,
    )
    return {
        "success": True,
        "already_running": already,
        "stream_name": body.stream_name,
        "status": status,
    }


@router.post("/api/rtsp/stop")
async def rtsp_stop(body: RtspStop, services: ServicesDep) -> dict[str, Any]:
    await services.streams.remove(body.stream_name)
    return {"success": True, "stream_name": body.stream_name}


@router.get("/api/rtsp/status")
async def rtsp_status(services: ServicesDep) -> dict[str, Any]:
    statuses = services.streams.statuses()
    return {
        "active_streams": sum(1 for s in statuses if s["state"] == "live"),
        "analyzing_streams": sum(1 for s in statuses if s["analyzers"]),
        "streams": {s["id"]: s for s in statuses},
    }
