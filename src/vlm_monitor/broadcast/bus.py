"""In-process event bus: every push channel (WebSocket, later Socket.IO) reads from it.

Each event gets a monotonically increasing ``seq``; the newest ``RING_EVENTS`` (and at most
``RING_BYTES`` of them, as JSON: results posted by workers may be large) are kept so a client
that reconnects with ``since_seq`` first receives what it missed. A listener whose
queue fills up is cut off with a reason (it can resume with ``since_seq``): one slow client
never slows the others or grows memory.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
from collections.abc import AsyncGenerator, Callable
from typing import Any

from vlm_monitor.types import Event

CLIENT_QUEUE_EVENTS = 1000
RING_EVENTS = 5000
RING_BYTES = 32 * 1024 * 1024


class EventQueue:
    def __init__(self, maxsize: int = CLIENT_QUEUE_EVENTS) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize)
        self.overflowed = asyncio.Event()
        self.last_seq = 0

    def put(self, doc: dict[str, Any]) -> None:
        if self.overflowed.is_set():
            return
        try:
            self.queue.put_nowait(doc)
        except asyncio.QueueFull:
            self.overflowed.set()

    async def get(self) -> dict[str, Any]:
        doc = await self.queue.get()
        self.last_seq = int(doc.get("seq", self.last_seq))
        return doc


class EventBus:
    """Lives on the event loop; ``publish_threadsafe`` is for producers in other threads."""

    def __init__(self) -> None:
        self._listeners: set[EventQueue] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seq = itertools.count(1)
        self._ring: collections.deque[dict[str, Any]] = collections.deque()
        self._sizes: collections.deque[int] = collections.deque()
        self._ring_bytes = 0
        self.published = 0
        self.cut_off = 0  # listeners dropped for being too slow
        self.forwarders: list[Callable[[dict[str, Any]], None]] = []

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def listen(self, since_seq: int | None = None) -> tuple[EventQueue, bool]:
        """A new listener, pre-filled with the events after ``since_seq``; the flag is False
        when some of those are no longer kept (the client should reload its state)."""
        listener = EventQueue()
        complete = True
        if since_seq is not None:
            missed = [doc for doc in self._ring if doc["seq"] > since_seq]
            oldest = self._ring[0]["seq"] if self._ring else self.last_seq + 1
            complete = since_seq >= oldest - 1
            for doc in missed[-CLIENT_QUEUE_EVENTS:]:
                listener.put(doc)
        self._listeners.add(listener)
        return listener, complete

    async def follow(self) -> AsyncGenerator[dict[str, Any], None]:
        """Every event from now on, for in-process consumers (Socket.IO, flow triggers): one
        that falls a whole queue behind resumes from the ring where it was, instead of being
        cut off like a remote client. Use with ``contextlib.aclosing`` so that cancelling the
        consumer unregisters it at once."""
        since: int | None = None
        while True:
            listener, _ = self.listen(since)
            try:
                while not listener.overflowed.is_set():
                    yield await listener.get()
                since = listener.last_seq
            finally:
                self.unlisten(listener)

    def unlisten(self, listener: EventQueue) -> None:
        self._listeners.discard(listener)

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    @property
    def last_seq(self) -> int:
        return int(self._ring[-1]["seq"]) if self._ring else 0

    def publish(self, event: Event, origin: str | None = None) -> dict[str, Any]:
        """``origin``: the node an event relayed from another node came from (None: here).
        Local events are also handed to the ``forwarders`` (e.g. the Redis relay)."""
        doc = {"seq": next(self._seq), **event.to_json()}
        if origin is not None:
            doc["node"] = origin
        else:
            for forward in self.forwarders:
                forward(doc)
        self.published += 1
        self._keep(doc)
        for listener in list(self._listeners):
            was_ok = not listener.overflowed.is_set()
            listener.put(doc)
            if was_ok and listener.overflowed.is_set():
                self.cut_off += 1
        return doc

    def _keep(self, doc: dict[str, Any]) -> None:
        size = len(json.dumps(doc, default=str))
        self._ring.append(doc)
        self._sizes.append(size)
        self._ring_bytes += size
        while len(self._ring) > RING_EVENTS or (
            self._ring_bytes > RING_BYTES and len(self._ring) > 1
        ):
            self._ring.popleft()
            self._ring_bytes -= self._sizes.popleft()

    def publish_threadsafe(self, event: Event) -> None:
        if self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed during shutdown
            self._loop.call_soon_threadsafe(self.publish, event)
