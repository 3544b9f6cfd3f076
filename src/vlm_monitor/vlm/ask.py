"""Questions about a live camera: the last seconds of its frames and its recent results, put
to a VLM that understands questions (not the offline ``local`` provider).

Frames come from a hub subscription started at the first question about a stream: one frame
a second, shrunk to 640x360 and kept for ``MAX_WINDOW_S``, so a question looks back without
holding full-size decoded pictures. Until that history has filled, the newest frame is used
(the answer says how many frames it saw)."""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from vlm_monitor.hub.hub import StreamHub
from vlm_monitor.vlm.base import VlmRequest
from vlm_monitor.vlm.resilience import GuardedProvider

HISTORY_FPS = 1.0
MAX_WINDOW_S = 60.0
MAX_FRAMES = 8  # sent per question, evenly spread over the window
SIZE = (640, 360)
RECENT_RESULTS = 3


class AskError(Exception):
    """A question that cannot be put: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Answer:
    answer: str
    provider: str
    frames: int
    latency_s: float


class FrameHistory:
    """Per stream: (ts, BGR) at ``HISTORY_FPS`` for the last ``MAX_WINDOW_S``."""

    def __init__(self, hub: StreamHub) -> None:
        self.hub = hub
        self._frames: dict[str, collections.deque[tuple[float, np.ndarray]]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def watch(self, stream: str) -> None:
        if stream in self._tasks and not self._tasks[stream].done():
            return
        ring: collections.deque[tuple[float, np.ndarray]] = collections.deque(
            maxlen=int(MAX_WINDOW_S * HISTORY_FPS)
        )
        self._frames[stream] = ring
        sub = self.hub.subscribe(stream, "ask", "latest", frame_rate=HISTORY_FPS, size=SIZE)
        self._tasks[stream] = asyncio.create_task(self._record(sub, ring))

    async def _record(self, sub: Any, ring: collections.deque[tuple[float, np.ndarray]]) -> None:
        try:
            async for frame in sub:  # ends when the stream is removed
                ring.append((frame.ts, await asyncio.to_thread(frame.bgr_fit, SIZE)))
        finally:
            self.hub.unsubscribe(sub)

    async def window(self, stream: str, window_s: float) -> list[tuple[float, np.ndarray]]:
        self.watch(stream)
        since = time.time() - window_s
        frames = [f for f in self._frames.get(stream, ()) if f[0] >= since]
        if not frames:
            latest = self.hub.latest(stream)
            if latest is not None and latest.ts >= since:
                frames = [(latest.ts, await asyncio.to_thread(latest.bgr_fit, SIZE))]
        if len(frames) > MAX_FRAMES:
            keep = np.linspace(0, len(frames) - 1, MAX_FRAMES).round().astype(int)
            frames = [frames[i] for i in keep]
        return frames

    def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()


def choose_provider(
    providers: dict[str, GuardedProvider], kinds: dict[str, str], wanted: list[str]
) -> GuardedProvider:
    """The first of ``wanted`` (the stream's clip providers), else of all, that can answer a
    question; AskError 409 naming the fix when none can."""
    order = [n for n in wanted if n in providers] + [n for n in providers if n not in wanted]
    for name in order:
        if kinds.get(name) != "local":
            return providers[name]
    raise AskError(
        409,
        "no VLM provider here can answer questions: the offline `local` provider only "
        "measures motion, faces and colours. Add a provider of kind openai (any "
        "/chat/completions server: OpenAI, DashScope compatible mode, Ollama, vLLM) or "
        "dashscope under vlm.providers",
    )


def build_prompt(question: str, window_s: float, recent: list[dict[str, Any]]) -> str:
    lines = [
        f"These are frames from a live camera over the last {window_s:g} seconds, oldest "
        "first. Answer the question from what they show; say so if they cannot tell.",
    ]
    notes = [r for r in recent if r.get("result") and not r.get("error")]
    if notes:
        lines.append("Earlier observations of this camera, newest first:")
        for r in notes[:RECENT_RESULTS]:
            when = r.get("inference_end_timestamp") or ""
            lines.append(f"- {when}: {str(r['result'])[:500]}")
    lines.append(f"Question: {question}")
    return "\n".join(lines)


async def ask(
    history: FrameHistory,
    provider: GuardedProvider,
    stream: str,
    question: str,
    window_s: float,
    recent: list[dict[str, Any]],
    reference: np.ndarray | None = None,
) -> Answer:
    """``reference``: the stream's picture of the empty scene, sent before the frames."""
    started = time.monotonic()
    frames = await history.window(stream, window_s)
    if not frames:
        raise AskError(409, f"no frame from stream {stream!r} in the last {window_s:g} s")
    request = VlmRequest(
        stream,
        build_prompt(question, window_s, recent),
        [f for _, f in frames],
        [t for t, _ in frames],
        reference=reference,
    )
    answer = await asyncio.to_thread(provider.analyze, request)
    # The frames the model saw: the provider's frame budget may have sent fewer.
    height, width = frames[0][1].shape[:2]
    plan = provider.frame_plan(request, len(frames), (width, height))
    seen = len(frames) if plan is None else plan.frames
    return Answer(answer.text, provider.name, seen, round(time.monotonic() - started, 3))
