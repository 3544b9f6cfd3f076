"""In-process event bus: every push channel (WebSocket, later Socket.IO) reads from it."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from vlm_monitor.types import Event

CLIENT_QUEUE_EVENTS = 1000


class EventQueue:
    """One listener's bounded queue. When full the OLDEST event is dropped (and counted):
    a slow dashboard sees the present, not a growing backlog."""

    def __init__(self, maxsize: int = CLIENT_QUEUE_EVENTS) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize)
        self.dropped = 0

    def put(self, doc: dict[str, Any]) -> None:
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
                self.dropped += 1
        self.queue.put_nowait(doc)

    async def get(self) -> dict[str, Any]:
        return await self.queue.get()


class EventBus:
    """Lives on the event loop; ``publish_threadsafe`` is for producers in other threads."""

    def __init__(self) -> None:
        self._listeners: set[EventQueue] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.published = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def listen(self) -> EventQueue:
        listener = EventQueue()
        self._listeners.add(listener)
        return listener

    def unlisten(self, listener: EventQueue) -> None:
        self._listeners.discard(listener)

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    def publish(self, event: Event) -> None:
        doc = event.to_json()
        self.published += 1
        for listener in list(self._listeners):
            listener.put(doc)

    def publish_threadsafe(self, event: Event) -> None:
        if self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed during shutdown
            self._loop.call_soon_threadsafe(self.publish, event)
