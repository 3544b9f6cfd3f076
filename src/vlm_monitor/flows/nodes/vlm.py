"""VLM nodes: ``vlm`` (a prompt about frames/clips) and ``watch`` (a yes/no question asked
repeatedly, the model choosing when to look again)."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, Field

from vlm_monitor.flows.nodes.base import (
    CLIP,
    DATA,
    FRAME,
    GATE,
    NODE_TYPES,
    ClipValue,
    FrameValue,
    Gate,
    NodeError,
    NodeType,
    Params,
    RunContext,
)
from vlm_monitor.vlm.base import VlmAnswer, VlmRequest
from vlm_monitor.vlm.schemas import check_schema, resolve_schema


class VlmParams(Params):
    prompt: str = Field(max_length=8000, description="template: $stream $flow $<input node>")
    provider: str | None = Field(None, description="a configured provider; null = the first")
    schema_: Annotated[dict[str, Any] | str | None, AfterValidator(check_schema)] = Field(
        None,
        alias="schema",
        description="JSON Schema the answer must match (checked when the flow is loaded), or "
        "a built-in by name: review",
    )
    max_frames: int = Field(8, ge=1, le=32)


def _provider(ctx: RunContext, name: str | None) -> Any:
    providers = ctx.ports.providers
    if not providers:
        raise NodeError("no VLM provider configured (vlm.providers)")
    chosen = name or next(iter(providers))
    if chosen not in providers:
        raise NodeError(f"unknown VLM provider {chosen!r}; configured: {sorted(providers)}")
    return providers[chosen]


def _images(inputs: dict[str, Any]) -> tuple[list[np.ndarray], list[float], str | None]:
    frames: list[np.ndarray] = []
    stamps: list[float] = []
    stream = None
    for value in inputs.values():
        if isinstance(value, FrameValue):
            frames.append(value.image)
            stamps.append(value.ts)
            stream = value.stream
        elif isinstance(value, ClipValue):
            frames += value.frames
            stamps += value.timestamps
            stream = value.stream
    return frames, stamps, stream


@NODE_TYPES.register("vlm")
class VlmNode(NodeType):
    type_name = "vlm"
    description = "asks a VLM about the input frames/clips"
    ParamsModel = VlmParams
    accepts = frozenset({FRAME, CLIP, DATA, GATE})
    default_timeout_s = 120.0

    async def run(self, ctx: RunContext, inputs: dict[str, Any]) -> dict[str, Any]:
        p: VlmParams = self.params  # type: ignore[assignment]
        provider = _provider(ctx, p.provider)
        frames, stamps, stream = _images(inputs)
        stream = stream or self.flow.stream or ""
        if len(frames) > p.max_frames:  # evenly spaced
            keep = np.linspace(0, len(frames) - 1, p.max_frames).round().astype(int)
            frames, stamps = [frames[i] for i in keep], [stamps[i] for i in keep]
        request = VlmRequest(
            stream=stream,
            prompt=ctx.render(p.prompt, inputs, stream),
            frames=frames,
            timestamps=stamps,
            schema=resolve_schema(p.schema_),
        )
        answer: VlmAnswer = await ctx.blocking(provider.analyze, request)
        return {
            "text": answer.text,
            "structured": answer.structured,
            "provider": provider.name,
            "model": answer.model,
        }


WATCH_SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "string", "enum": ["yes", "no"]},
        "next_check_s": {"type": "number"},
        "reason": {"type": "string"},
    },
    "required": ["answer"],
}


class WatchParams(Params):
    question: str = Field(max_length=2000, description="a yes/no question about the picture")
    stream: str | None = None
    provider: str | None = None
    min_interval_s: float = Field(2.0, gt=0)
    max_interval_s: float = Field(60.0, gt=0)
    default_interval_s: float = Field(10.0, gt=0)


@NODE_TYPES.register("watch")
class WatchNode(NodeType):
    """Asks the question about the latest frame, at most when the model's ``next_check_s``
    (clamped to [min, max]) says; runs in between return the last answer. Its gate is open
    when the answer is yes."""

    type_name = "watch"
    description = "a VLM yes/no question asked repeatedly; gates what follows"
    ParamsModel = WatchParams
    output = GATE
    needs_stream = True
    default_timeout_s = 120.0

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._next_check = 0.0
        self._last: Gate | None = None

    async def run(self, ctx: RunContext, inputs: dict[str, Any]) -> Gate:
        p: WatchParams = self.params  # type: ignore[assignment]
        now = time.time()
        if self._last is not None and now < self._next_check:
            return Gate(self._last.value, {**self._last.data, "cached": True})
        frame = ctx.ports.hub.latest(self.stream or "")
        if frame is None:
            raise NodeError(f"no frame from stream {self.stream!r}")
        image = await ctx.blocking(frame.bgr_fit, (640, 360))
        provider = _provider(ctx, p.provider)
        prompt = (
            f"Question: {p.question}\nAnswer with JSON only: "
            '{"answer": "yes" or "no", "next_check_s": seconds until it is worth looking '
            f'again ({p.min_interval_s:g}-{p.max_interval_s:g}), "reason": short}}'
        )
        request = VlmRequest(self.stream or "", prompt, [image], [frame.ts], schema=WATCH_SCHEMA)
        answer: VlmAnswer = await ctx.blocking(provider.analyze, request)
        parsed = answer.structured or _parse(answer.text)
        value = str(parsed.get("answer", "")).strip().lower() in ("yes", "true")
        wait = parsed.get("next_check_s", p.default_interval_s)
        if not isinstance(wait, int | float):
            wait = p.default_interval_s
        wait = min(p.max_interval_s, max(p.min_interval_s, float(wait)))
        self._next_check = now + wait
        self._last = Gate(
            value, {"answer": value, "next_check_s": wait, "reason": parsed.get("reason")}
        )
        return self._last


def _parse(text: str) -> dict[str, Any]:
    start, end = text.find("{"), text.rfind("}")
    if start >= 0 and end > start:
        try:
            doc = json.loads(text[start : end + 1])
            if isinstance(doc, dict):
                return doc
        except json.JSONDecodeError:
            pass
    lowered = text.strip().lower()
    return {"answer": "yes" if lowered.startswith("yes") else "no"}
