"""Where a WHIP publisher's decoded frames wait for the stream's Source thread.

The asyncio side (the WebRTC track) puts frames; the Source's thread takes them, exactly like
it reads a camera, so a published stream has the same state machine, counters, analyzers,
clips and flows as any other. Bounded: when the Source falls behind, the oldest frame goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

END = object()  # the publisher has gone
MAX_QUEUED = 4
AUDIO_BACKLOG = 100  # 20 ms WebRTC audio frames


class PublisherStall(RuntimeError):
    """A publisher is connected but no frame came for the stall timeout."""


class WhipInbox:
    def __init__(self) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(MAX_QUEUED)
        self._lock = threading.Lock()
        self.publishing = False
        self.dropped = 0
        # The publisher's audio (16 kHz mono s16le) for realtime sessions that listen to this
        # stream; touched on the event loop only. A listener that falls 2 s behind loses audio.
        self.audio_listeners: set[asyncio.Queue[bytes]] = set()

    def listen_audio(self) -> asyncio.Queue[bytes]:
        listener: asyncio.Queue[bytes] = asyncio.Queue(AUDIO_BACKLOG)
        self.audio_listeners.add(listener)
        return listener

    def publish_audio(self, pcm: bytes) -> None:
        for listener in self.audio_listeners:
            with contextlib.suppress(asyncio.QueueFull):
                listener.put_nowait(pcm)

    def begin(self) -> None:
        self.publishing = True

    def put(self, frame: Any) -> None:
        with self._lock:
            if self._queue.full():
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass
            self._queue.put_nowait(frame)

    def end(self) -> None:
        self.publishing = False
        with self._lock:
            while True:  # unread frames of an ended publish are dropped, END goes through
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            self._queue.put_nowait(END)

    def frames(self, stop: threading.Event, stall_timeout: float) -> Iterator[Any]:
        """Frames of the current publish; returns when it ends. Waits, without a timeout,
        while nobody publishes."""
        last = time.monotonic()
        while not stop.is_set():
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self.publishing and time.monotonic() - last > stall_timeout:
                    raise PublisherStall(
                        f"no frame from the publisher for {stall_timeout:.1f} s"
                    ) from None
                if not self.publishing:
                    last = time.monotonic()
                continue
            if item is END:
                return
            last = time.monotonic()
            yield item


class WhipInboxes:
    """One inbox per WHIP stream id; thread-safe."""

    def __init__(self) -> None:
        self._inboxes: dict[str, WhipInbox] = {}
        self._lock = threading.Lock()

    def get(self, stream_id: str) -> WhipInbox:
        with self._lock:
            inbox = self._inboxes.get(stream_id)
            if inbox is None:
                inbox = self._inboxes[stream_id] = WhipInbox()
            return inbox
