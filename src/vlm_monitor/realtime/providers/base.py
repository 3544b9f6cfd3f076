"""A realtime omni-model connection: our session's calls in, normalized events out.

Subclasses map our protocol to the provider's WebSocket events (``session.update``, audio and
image appends, commit, response create/cancel) and the provider's deltas back to ours. The
base class owns the connection: it connects lazily, reconnects with back-off when the
upstream drops (the browser session goes on; ``reconnects`` counts it), and serialises sends.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from vlm_monitor.aio import cancel_and_wait
from vlm_monitor.registry import Registry

log = logging.getLogger("vlm_monitor.realtime")


@dataclass
class UpstreamEvent:
    """What our session understands: ``text.delta``, ``audio.delta`` (base64 PCM),
    ``transcript`` (the user's words), ``response.done``, ``error``."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)


EventSink = Callable[[UpstreamEvent], Awaitable[None]]


class ProviderUnavailable(RuntimeError):
    pass


class RealtimeProvider(ABC):
    name = "base"
    output_sample_rate = 24000

    def __init__(self, url: str, model: str, api_key_env: str, voice: str | None,
                 instructions: str | None, on_event: EventSink) -> None:  # fmt: skip
        self.url, self.model, self.voice, self.instructions = url, model, voice, instructions
        self.api_key = os.environ.get(api_key_env)
        if not self.api_key:
            raise ProviderUnavailable(f"{api_key_env} is not set")
        self.on_event = on_event
        self.reconnects = 0
        self.sent: dict[str, int] = {}
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self.response_active = False

    # --- what a provider defines ------------------------------------------------------
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def endpoint(self) -> str:
        return f"{self.url}?model={self.model}"

    @abstractmethod
    def session_update(self) -> dict[str, Any]: ...

    @abstractmethod
    def audio_event(self, pcm16k: bytes) -> dict[str, Any]: ...

    @abstractmethod
    def image_event(self, jpeg: bytes) -> dict[str, Any]: ...

    def translate(self, event: dict[str, Any]) -> UpstreamEvent | None:
        """The server events of both protocols (OpenAI's GA names and the beta/DashScope
        ones, which differ only in some names) mapped to ours."""
        kind = event.get("type", "")
        if kind in ("response.text.delta", "response.output_text.delta"):
            return UpstreamEvent("text.delta", {"text": event.get("delta", "")})
        if kind in ("response.audio_transcript.delta", "response.output_audio_transcript.delta"):
            return UpstreamEvent("text.delta", {"text": event.get("delta", ""), "from_audio": True})
        if kind in ("response.audio.delta", "response.output_audio.delta"):
            return UpstreamEvent("audio.delta", {"audio": event.get("delta", "")})
        if kind == "conversation.item.input_audio_transcription.completed":
            return UpstreamEvent("transcript", {"text": event.get("transcript", "")})
        if kind == "response.done":
            response = event.get("response") or {}
            return UpstreamEvent("response.done", {"status": response.get("status", "completed")})
        if kind == "error":
            error = event.get("error") or {}
            return UpstreamEvent(
                "error",
                {"code": "upstream_" + str(error.get("code") or error.get("type") or "error"),
                 "message": str(error.get("message", "upstream error"))},
            )  # fmt: skip
        return None

    # --- the session's calls ----------------------------------------------------------
    async def append_audio(self, pcm16k: bytes) -> None:
        await self._send(self.audio_event(pcm16k))

    async def append_image(self, jpeg: bytes) -> None:
        await self._send(self.image_event(jpeg))

    async def commit_and_respond(self) -> None:
        await self._send({"type": "input_audio_buffer.commit"})
        await self._send({"type": "response.create"})
        self.response_active = True

    async def cancel_response(self) -> None:
        if self.response_active:
            await self._send({"type": "response.cancel"})

    async def close(self) -> None:
        self._closed = True
        await cancel_and_wait(self._reader)
        if self._ws is not None:
            await self._ws.close()

    # --- connection ---------------------------------------------------------------------
    async def connect(self) -> None:
        async with self._lock:
            await self._connect_locked()

    async def _connect_locked(self) -> None:
        if self._ws is not None:
            return
        # No permessage-deflate: base64 audio and JPEG barely compress, and deflating every
        # chunk was the event loop's largest cost with many sessions (bench/realtime.py).
        self._ws = await websockets.connect(
            self.endpoint(), additional_headers=self.headers(), max_size=16 * 1024 * 1024,
            open_timeout=10, compression=None,
        )  # fmt: skip
        await self._ws.send(json.dumps(self.session_update()))
        self._count("session.update")
        self._reader = asyncio.create_task(self._read(self._ws))

    async def _send(self, event: dict[str, Any]) -> None:
        payload = json.dumps(event)
        async with self._lock:
            for attempt in range(3):
                try:
                    await self._connect_locked()
                    assert self._ws is not None
                    await self._ws.send(payload)
                    self._count(event["type"])
                    return
                except (OSError, websockets.ConnectionClosed, TimeoutError) as exc:
                    self._drop(f"send failed: {exc}")
                    if attempt == 2:
                        raise ProviderUnavailable(
                            f"{self.name}: cannot reach upstream: {exc}"
                        ) from exc
                    await asyncio.sleep(0.2 * (attempt + 1))

    def _drop(self, why: str) -> None:
        if self._ws is not None:
            log.warning(
                "realtime upstream lost", extra={"fields": {"provider": self.name, "why": why}}
            )
            self.reconnects += 1
        self._ws = None
        self.response_active = False

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                try:
                    event = json.loads(message)
                except (json.JSONDecodeError, TypeError):
                    continue
                mapped = self.translate(event)
                if mapped is None:
                    continue
                if mapped.type == "response.done":
                    self.response_active = False
                await self.on_event(mapped)
        except websockets.ConnectionClosed:
            pass
        finally:
            if self._ws is ws and not self._closed:
                was_answering = self.response_active
                self._drop("connection closed")
                if was_answering:  # a response cut off by the drop still ends, for the browser
                    await self.on_event(UpstreamEvent("response.done", {"status": "interrupted"}))

    def _count(self, kind: str) -> None:
        self.sent[kind] = self.sent.get(kind, 0) + 1


# Realtime provider kinds by ``kind``: a new one is a subclass decorated with
# ``@REALTIME_KINDS.register("kind")``, imported by ``providers/__init__.py``.
REALTIME_KINDS: Registry[type[RealtimeProvider]] = Registry("realtime provider kind")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
