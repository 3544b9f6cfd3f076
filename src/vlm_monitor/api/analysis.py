"""Analyzers at runtime, their stored results, and the exam-proctoring stream -> session
bindings."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from vlm_monitor.analyzers.params import AnalyzerName
from vlm_monitor.analyzers.service import available
from vlm_monitor.api.deps import ServicesDep
from vlm_monitor.config import STREAM_ID_PATTERN, AnalyzerConfig
from vlm_monitor.results.summary import summarise

router = APIRouter()
SUMMARY_ANALYZERS = ("attention", "heart_rate", "emotion")


class AnalyzersBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    analyzers: list[AnalyzerConfig]


class SessionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    session_id: str = Field(min_length=1, max_length=200)
    student_id: str | None = Field(None, max_length=200)


@router.get("/api/analyzers")
async def list_analyzers(services: ServicesDep) -> dict[str, Any]:
    procs = services.analyzers.processes
    return {
        "available": available(),
        "streams": {sid: services.analyzers.status(sid) for sid in services.streams.ids()},
        "storage": services.analysis_writer.status(),
        "overload": services.analyzers.governor.status(),
        "processes": [] if procs is None else procs.status(),
    }


@router.put("/api/streams/{stream_id}/analyzers")
async def put_analyzers(stream_id: str, body: AnalyzersBody, services: ServicesDep) -> Any:
    analyzers = await services.control.set_analyzers(stream_id, body.analyzers)
    return {"id": stream_id, "analyzers": analyzers}


@router.get("/api/analyses")
async def list_analyses(
    services: ServicesDep,
    stream: str | None = Query(None, pattern=STREAM_ID_PATTERN),
    analyzer: AnalyzerName | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> list[dict[str, Any]]:
    """Stored analyzer results, newest first."""
    return await services.store.analyses(stream, analyzer, limit)


@router.get("/api/sessions")
async def list_sessions(services: ServicesDep) -> dict[str, Any]:
    resolved = {sid: services.sessions.resolve(sid) for sid in services.streams.ids()}
    return {
        "bindings": services.sessions.bindings(),
        "pattern": services.sessions.pattern.pattern,
        "streams": {sid: s.to_json() if s else None for sid, s in resolved.items()},
    }


@router.get("/api/sessions/{session_id}/summary")
async def session_summary(session_id: str, services: ServicesDep) -> dict[str, Any]:
    """The proctor's report of a session, from the stored results of its streams."""
    rows = await services.store.session_analyses(session_id, SUMMARY_ANALYZERS)
    if not rows:
        raise HTTPException(404, f"no stored analyses for session {session_id!r}")
    return await asyncio.to_thread(summarise, session_id, rows)


@router.put("/api/sessions/{stream_name}")
async def bind_session(stream_name: str, body: SessionBody, services: ServicesDep) -> Any:
    """Manual binding; the stream need not exist yet (it applies when it starts)."""
    if not _valid_name(stream_name):
        raise HTTPException(422, f"stream_name {stream_name!r} is not a valid stream id")
    session = await services.sessions.bind(stream_name, body.session_id, body.student_id)
    return {"stream_name": stream_name, **session.to_json()}


@router.delete("/api/sessions/{stream_name}")
async def unbind_session(stream_name: str, services: ServicesDep) -> dict[str, Any]:
    if not await services.sessions.unbind(stream_name):
        raise HTTPException(404, f"no manual session binding for {stream_name!r}")
    session = services.sessions.resolve(stream_name)
    return {"stream_name": stream_name, "now": session.to_json() if session else None}


def _valid_name(name: str) -> bool:
    return re.match(STREAM_ID_PATTERN, name) is not None
