"""``POST /api/streams/{id}/ask``: a question about what a live camera shows now."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from vlm_monitor.api.deps import ServicesDep
from vlm_monitor.services import Services
from vlm_monitor.sources.manager import StreamNotFoundError
from vlm_monitor.vlm.ask import MAX_WINDOW_S, AskError, FrameHistory, ask, choose_provider
from vlm_monitor.vlm.base import BudgetSpent, ProviderError
from vlm_monitor.vlm.reference import read_reference

router = APIRouter()
# One frame history per server; kept here rather than in Services, which it only reads.
_histories: weakref.WeakKeyDictionary[Services, FrameHistory] = weakref.WeakKeyDictionary()


class AskBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=2000)
    window_s: float = Field(10.0, gt=0, le=MAX_WINDOW_S, description="seconds to look back")
    provider: str | None = Field(
        None,
        description="a configured provider; default: the stream's clip provider, else the "
        "first that can answer",
    )


@router.post("/api/streams/{stream_id}/ask")
async def ask_stream(stream_id: str, body: AskBody, services: ServicesDep) -> dict[str, Any]:
    try:
        stream = services.streams.get(stream_id)
    except StreamNotFoundError:
        raise HTTPException(404, f"unknown stream {stream_id!r}") from None
    providers = services.providers.providers
    kinds: dict[str, str] = {p.name: p.kind for p in services.config.vlm.providers}
    if body.provider is not None and body.provider not in providers:
        raise HTTPException(
            422, f"provider: unknown provider {body.provider!r}; configured: {sorted(providers)}"
        )
    clips = stream.config.clips
    wanted = (
        [body.provider]
        if body.provider
        else ([] if clips is None or clips.provider is None else clips.provider)
    )
    history = _histories.get(services)
    if history is None:
        history = _histories[services] = FrameHistory(services.hub)
    try:
        provider = choose_provider(
            providers, kinds, [wanted] if isinstance(wanted, str) else wanted
        )
        recent = await services.store.results(stream_id, 3)
        reference = await _reference(stream.config.reference_frame)
        answer = await ask(
            history, provider, stream_id, body.question, body.window_s, recent, reference
        )
    except AskError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    except BudgetSpent as exc:  # not the provider's failure: a limit the user set
        raise HTTPException(429, f"no call made: {exc}") from None
    except ProviderError as exc:
        raise HTTPException(502, f"the VLM provider failed: {exc}") from None
    return {
        "answer": answer.answer,
        "provider": answer.provider,
        "frames": answer.frames,
        "latency_s": answer.latency_s,
    }


async def _reference(path: str | None) -> np.ndarray | None:
    """The stream's reference picture, read for each question (a few milliseconds, off the
    loop; questions are rare). A file gone since it was checked: asked without it."""
    if path is None:
        return None
    try:
        return await asyncio.to_thread(read_reference, path)
    except (OSError, ValueError):
        return None
