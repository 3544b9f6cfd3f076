"""``POST /api/analyses``: analyzer results computed elsewhere (``vlm-monitor worker``).

They go the way the server's own results go, through the result sink: session stamp,
``analysis`` event (Socket.IO, ``/ws/events``), SQLite. Control access (the API token), as
every changing route; the worker's latency is measured here, on the clock that stamped the
frame.
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from vlm_monitor.analyzers.params import AnalyzerName
from vlm_monitor.api.deps import ServicesDep, require_stream
from vlm_monitor.config import STREAM_ID_PATTERN
from vlm_monitor.types import AnalysisResult

router = APIRouter()
MAX_BATCH = 200
MAX_PAYLOAD_BYTES = 65536  # an analyzer's reading: the largest (OCR words) is a few KB


class AnalysisIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stream: str = Field(pattern=STREAM_ID_PATTERN)
    analyzer: AnalyzerName
    frame_seq: int = Field(0, ge=0, le=2**63 - 1)
    video_timestamp: float = Field(ge=0, allow_inf_nan=False)
    result: dict[str, Any]

    @field_validator("result")
    @classmethod
    def _json_sized(cls, value: dict[str, Any]) -> dict[str, Any]:
        # NaN would be stored, then break every JSON answer that lists it.
        try:
            size = len(json.dumps(value, allow_nan=False))
        except ValueError:
            raise ValueError("result must be plain JSON (no NaN or Infinity)") from None
        if size > MAX_PAYLOAD_BYTES:
            raise ValueError(f"result takes {size} bytes as JSON, over {MAX_PAYLOAD_BYTES}")
        return value


class AnalysesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    results: list[AnalysisIn] = Field(min_length=1, max_length=MAX_BATCH)


@router.post("/api/analyses", status_code=202)
async def post_analyses(body: AnalysesIn, services: ServicesDep) -> dict[str, Any]:
    """Queued for SQLite and pushed to listeners; a result already stored for the same
    (stream, analyzer, frame time) is kept once."""
    for stream in {r.stream for r in body.results}:
        require_stream(services, stream)
    now = time.time()
    for r in body.results:
        latency = max(0.0, now - r.video_timestamp)
        reading = AnalysisResult(
            r.stream, r.analyzer, r.frame_seq, r.video_timestamp, latency, r.result, origin="worker"
        )
        services.results.analysis(reading)
    return {"accepted": len(body.results)}
