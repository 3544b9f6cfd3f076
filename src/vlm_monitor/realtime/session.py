"""One ``/ws/video`` session: the browser's audio and frames in, VAD, the omni model, and its
answer streamed back (the original chat service's protocol, message for message).

- Audio is validated, run through the session's VAD (in a thread) and, while the user speaks
  (plus ``preroll_ms`` from just before), forwarded to the provider. At speech end the turn
  is committed and a response requested.
- Frames are forwarded at most at ``video_fps``, shrunk to <= 720p and re-encoded at JPEG
  quality 70; extra frames are dropped (counted), never queued.
- Barge-in: speech starting while a response streams cancels it; the browser gets
  ``response.done`` with ``status: "cancelled"`` at once, and the rest of that response is
  dropped.
- Without a provider (no API key), VAD still runs and each turn end gets an ``error`` with
  code ``provider_unavailable``.
- ``?source=<stream>``: any stream of the server is the picture (a hub subscription at
  ``video_fps``); the browser's microphone is the audio, or, for a ``whip://`` stream, the
  publisher's microphone as well.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from vlm_monitor.config import RealtimeConfig, RealtimeProviderConfig
from vlm_monitor.hub import StreamHub
from vlm_monitor.ratelimit import TokenBucket
from vlm_monitor.realtime.metrics import RealtimeMetrics, SessionStats
from vlm_monitor.realtime.protocol import (
    ClientMessage,
    ProtocolError,
    model_jpeg,
    normalise_frame,
    parse,
)
from vlm_monitor.realtime.providers import REALTIME_KINDS
from vlm_monitor.realtime.providers.base import (
    ProviderUnavailable,
    RealtimeProvider,
    UpstreamEvent,
)
from vlm_monitor.realtime.vad import SAMPLE_RATE, Vad
from vlm_monitor.webrtc.inbox import WhipInbox

log = logging.getLogger("vlm_monitor.realtime")
SOURCE_AUDIO_CHUNK = 3200
PARSE_INLINE_BYTES = 65536  # smaller messages (audio) are parsed on the loop: no thread hop
VAD_BACKLOG_CHUNKS = 64  # audio messages waiting for the VAD; more means overload
PREROLL_SLACK_MS = 2000
# VAD runs on at most one thread per core: more would only make the ONNX calls contend.
VAD_POOL = ThreadPoolExecutor(os.cpu_count() or 2, thread_name_prefix="vad")


@dataclass(frozen=True)
class StreamSource:
    """A stream of this server whose picture feeds the session instead of the browser's
    camera: ``/ws/video?source=<stream>``. A WHIP-published stream (``inbox``) brings its
    publisher's microphone too; for any other camera the audio is the browser's."""

    stream_id: str
    hub: StreamHub
    inbox: WhipInbox | None = None


class RealtimeSession:
    def __init__(
        self,
        ws: WebSocket,
        config: RealtimeConfig,
        metrics: RealtimeMetrics,
        source: StreamSource | None = None,
    ) -> None:
        self.ws, self.config, self.metrics, self.source = ws, config, metrics, source
        self.id = f"ws_{uuid.uuid4().hex[:12]}"
        self.stats: SessionStats = metrics.opened(self.id)
        self.vad = Vad(config.vad.threshold, config.vad.min_speech_ms, config.vad.min_silence_ms)
        self.provider: RealtimeProvider | None = None
        self.provider_error: str | None = None
        self._send_lock = asyncio.Lock()
        self._next_frame = 0.0
        self._preroll: collections.deque[tuple[int, bytes]] = collections.deque()
        self._preroll_bytes = 0
        self._received = 0  # samples received, the position of the next chunk
        self._rate = TokenBucket(config.max_messages_per_s)
        # A burst may hold one message of the largest size allowed.
        self._bytes = TokenBucket(
            config.max_bytes_per_s, max(config.max_bytes_per_s, config.max_message_bytes)
        )
        self._speaking = False  # as far as the VAD has said
        self._vad_queue: asyncio.Queue[bytes] = asyncio.Queue(VAD_BACKLOG_CHUNKS)
        self._dropping_response = False  # after a barge-in, until upstream confirms
        self._turn_ended_at: float | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def _choose_provider(self) -> None:
        reasons = []
        for cfg in self.config.providers:
            try:
                self.provider = self._build(cfg)
                return
            except ProviderUnavailable as exc:
                reasons.append(f"{cfg.kind}: {exc}")
        self.provider_error = "no realtime provider configured (" + "; ".join(reasons) + ")"

    def _build(self, cfg: RealtimeProviderConfig) -> RealtimeProvider:
        return REALTIME_KINDS.get(cfg.kind)(
            cfg.url or "", cfg.model or "", cfg.api_key_env or "", cfg.voice,
            self.config.instructions, self._on_upstream,
        )  # fmt: skip

    async def send(self, doc: dict[str, Any]) -> None:
        if self.ws.client_state != WebSocketState.CONNECTED:
            return
        async with self._send_lock:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                await self.ws.send_json(doc)

    async def error(self, code: str, message: str) -> None:
        self.stats.add("errors")
        await self.send({"type": "error", "code": code, "message": message})

    async def run(self) -> None:
        await self.ws.accept()
        self._choose_provider()
        log.info(
            "realtime session opened",
            extra={
                "fields": {
                    "session": self.id,
                    "provider": self.provider.name if self.provider else None,
                }
            },
        )
        await self.send(
            {
                "type": "ready",
                "session_id": self.id,
                "message": "realtime video session ready",
                "provider": self.provider.name if self.provider else None,
                "video_fps": self.config.video_fps,
            }
        )
        if self.provider is None:
            await self.error("provider_unavailable", self.provider_error or "no provider")
        self._tasks.add(asyncio.create_task(self._vad_loop(), name=f"vad-{self.id}"))
        if self.source is not None:
            if self.source.inbox is not None:
                self._tasks.add(asyncio.create_task(self._pull_audio(self.source.inbox)))
            self._tasks.add(asyncio.create_task(self._pull_video(self.source)))
        try:
            while True:
                raw = await self.ws.receive()
                if raw["type"] == "websocket.disconnect":
                    break
                body = raw.get("text")
                if body is None:
                    body = raw.get("bytes") or b""
                if not await self._within_rate(len(body)):
                    continue
                try:
                    message = await self._parse(body)
                except ProtocolError as exc:
                    await self.error(exc.code, str(exc))
                    continue
                if message.type == "close":
                    break
                if message.type == "audio":
                    await self._audio(message.data)
                else:
                    await self._video(message.data)
        except WebSocketDisconnect:
            pass
        finally:
            await self._close()

    async def _within_rate(self, size: int) -> bool:
        """Messages per second and bytes per second, each a token bucket; what is over
        either is dropped unread. One error per burst: a flooding client must not make us
        flood back. Over the byte budget, the next message is not read until the budget has
        refilled: with uvicorn's small receive queue that pushes back on the client's TCP
        connection, so a flood costs this server its budget, not the client's bandwidth."""
        if not self._rate.allow():
            bucket, limit = self._rate, f"{self.config.max_messages_per_s} messages/s"
        elif not self._bytes.allow(size):
            bucket, limit = self._bytes, f"{self.config.max_bytes_per_s} bytes/s"
        else:
            return True
        if bucket.refused == 1 or bucket.refused % 100 == 0:
            await self.error("rate_limited", f"over {limit}; {bucket.refused} dropped")
        if bucket is self._bytes:
            await asyncio.sleep(min(1.0, size / self.config.max_bytes_per_s))
        return False

    async def _parse(self, body: str | bytes) -> ClientMessage:
        want_video = time.monotonic() >= self._next_frame
        if len(body) < PARSE_INLINE_BYTES:
            return parse(body, self.config, want_video)
        # JSON and base64 of a big frame take milliseconds: not on the event loop.
        return await asyncio.to_thread(parse, body, self.config, want_video)

    async def _close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.provider is not None:
            await self.provider.close()
        self.metrics.closed(self.id)
        if self.ws.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(RuntimeError):
                await self.ws.close(1000)
        log.info(
            "realtime session closed", extra={"fields": {"session": self.id, **self.stats.counts}}
        )

    # --- audio ------------------------------------------------------------------------
    async def _audio(self, pcm: bytes) -> None:
        """Forwarding never waits for the VAD: while the user speaks (as far as the VAD has
        told), audio goes straight to the provider; otherwise it waits in the pre-roll. The
        VAD reads the same audio in its own task, at its own pace."""
        started = time.perf_counter()
        self.stats.add("audio_chunks")
        self.stats.add("audio_bytes", len(pcm))
        if self._speaking:
            await self._forward_audio(pcm)
        else:
            self._keep_preroll(pcm)
        self._received += len(pcm) // 2
        try:
            self._vad_queue.put_nowait(pcm)
        except asyncio.QueueFull:
            self.stats.add("vad_dropped")
            if self.stats.counts["vad_dropped"] % 50 == 1:  # once per burst, not per chunk
                await self.error("vad_overloaded", "the server cannot keep up; audio skipped")
        self.stats.chunk_ms.append((time.perf_counter() - started) * 1000)

    async def _vad_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            pcm = await self._vad_queue.get()
            for event in await loop.run_in_executor(VAD_POOL, self.vad.feed, pcm):
                if event.kind == "speech.started":
                    # Onset -> detection, in stream time: how far past the onset it had to read.
                    delay = (self.vad.position - event.sample) / SAMPLE_RATE
                    self.stats.onset_s.append(round(delay, 3))
                    self.metrics.onset_s.append(delay)
                    self._speaking = True
                    await self.send({"type": "speech.started"})
                    await self._barge_in()
                    await self._forward_preroll(event.sample)
                else:
                    self._speaking = False
                    await self.send({"type": "speech.stopped"})
                    await self._end_turn()

    def _keep_preroll(self, pcm: bytes) -> None:
        self._preroll.append((self._received, pcm))
        self._preroll_bytes += len(pcm)
        # Enough for the pre-roll plus the audio the VAD has not judged yet.
        limit = (self.config.preroll_ms + PREROLL_SLACK_MS) * 32
        while self._preroll and self._preroll_bytes - len(self._preroll[0][1]) >= limit:
            self._preroll_bytes -= len(self._preroll.popleft()[1])

    async def _forward_preroll(self, onset: int) -> None:
        """The audio from ``preroll_ms`` before the onset to now."""
        first = onset - self.config.preroll_ms * SAMPLE_RATE // 1000
        chunks = [pcm for start, pcm in self._preroll if start + len(pcm) // 2 > first]
        self._preroll.clear()
        self._preroll_bytes = 0
        for chunk in chunks:
            await self._forward_audio(chunk)

    async def _forward_audio(self, pcm: bytes) -> None:
        if self.provider is None:
            return
        try:
            await self.provider.append_audio(pcm)
        except ProviderUnavailable as exc:
            await self.error("provider_unreachable", str(exc))

    async def _barge_in(self) -> None:
        if self.provider is not None and self.provider.response_active:
            self.stats.add("barge_ins")
            self._dropping_response = True
            with contextlib.suppress(ProviderUnavailable):
                await self.provider.cancel_response()
            await self.send({"type": "response.done", "status": "cancelled", "reason": "barge_in"})

    async def _end_turn(self) -> None:
        self.stats.add("turns")
        if self.provider is None:
            await self.error(
                "provider_unavailable",
                f"speech ended but there is no model to answer: {self.provider_error}",
            )
            return
        try:
            await self.provider.commit_and_respond()
            self._turn_ended_at = time.perf_counter()
        except ProviderUnavailable as exc:
            await self.error("provider_unreachable", str(exc))

    # --- video ------------------------------------------------------------------------
    async def _video(self, jpeg: bytes) -> None:
        self.stats.add("frames_received")
        now = time.monotonic()
        if not jpeg or now < self._next_frame:
            self.stats.add("frames_dropped")
            return
        try:
            frame = await asyncio.to_thread(normalise_frame, jpeg)
        except ProtocolError as exc:
            await self.error(exc.code, str(exc))
            return
        self._next_frame = now + 1.0 / self.config.video_fps
        await self._forward_image(frame)

    async def _forward_image(self, jpeg: bytes) -> None:
        if self.provider is None:
            return
        try:
            await self.provider.append_image(jpeg)
            self.stats.add("frames_forwarded")
        except ProviderUnavailable as exc:
            await self.error("provider_unreachable", str(exc))

    # --- a stream of this server as the input -------------------------------------------
    async def _pull_audio(self, inbox: WhipInbox) -> None:
        listener = inbox.listen_audio()
        pending = b""
        try:
            while True:
                pending += await listener.get()
                if len(pending) >= SOURCE_AUDIO_CHUNK:  # 100 ms, like a browser would send
                    chunk, pending = pending, b""
                    await self._audio(chunk)
        finally:
            inbox.audio_listeners.discard(listener)

    async def _pull_video(self, source: StreamSource) -> None:
        """The subscription paces the frames (by capture time, so no rate gate here); a
        browser frame only goes out in a gap of ``1 / video_fps`` after a camera frame."""
        if self.provider is None:
            return  # no model to show them to: not a frame is converted
        sub = source.hub.subscribe(
            source.stream_id, f"realtime:{self.id}", "latest", frame_rate=self.config.video_fps
        )
        try:
            async for frame in sub:
                self.stats.add("frames_received")
                self._next_frame = time.monotonic() + 1.0 / self.config.video_fps
                await self._forward_image(await asyncio.to_thread(model_jpeg, frame))
        finally:
            source.hub.unsubscribe(sub)
        # The loop ends only when the stream is removed; the session goes on without it.
        await self.error("source_ended", f"stream {source.stream_id!r} was removed")

    # --- upstream -----------------------------------------------------------------------
    async def _on_upstream(self, event: UpstreamEvent) -> None:
        if self._dropping_response:
            if event.type == "response.done":
                self._dropping_response = False  # the browser was told at the barge-in
                return
            if event.type in ("text.delta", "audio.delta"):
                return
        if event.type in ("text.delta", "audio.delta") and self._turn_ended_at is not None:
            delay = time.perf_counter() - self._turn_ended_at
            self.stats.first_delta_s.append(round(delay, 3))
            self.metrics.first_delta_s.append(delay)
            self._turn_ended_at = None
        if event.type == "audio.delta":
            rate = self.provider.output_sample_rate if self.provider else 24000
            await self.send(
                {"type": "audio.delta", "audio": event.data["audio"], "sample_rate": rate}
            )
        elif event.type == "error":
            await self.error(event.data["code"], event.data["message"])
        elif (
            event.type == "response.done"
            and self._dropping_response is False
            and event.data.get("status") == "cancelled"
        ):
            return  # the barge-in's done was sent already
        else:
            await self.send({"type": event.type, **event.data})
