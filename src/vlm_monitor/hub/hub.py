"""StreamHub (the original system's InternalVideoDistributor): per-stream fan-out of shared
frames."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from vlm_monitor.hub.subscription import Policy, Subscription, wake_all
from vlm_monitor.types import Frame


class StreamHub:
    """Thread-safe. ``publish`` is called by each stream's decoding thread; it reads an
    immutable tuple of subscribers, so subscribing never blocks a publisher. The same Frame
    object goes to every subscriber: nothing is copied."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: dict[str, tuple[Subscription, ...]] = {}
        self._latest: dict[str, Frame] = {}

    def publish(self, frame: Frame) -> None:
        self._latest[frame.stream_id] = frame
        waiting: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for sub in self._subs.get(frame.stream_id, ()):
            waiter = sub.offer(frame)
            if waiter is not None and sub.loop is not None:
                waiting.setdefault(sub.loop, []).append(waiter)
        # One wake-up per loop per frame, however many asyncio consumers wait on it.
        for loop, waiters in waiting.items():
            with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                loop.call_soon_threadsafe(wake_all, waiters)

    def latest(self, stream_id: str) -> Frame | None:
        return self._latest.get(stream_id)

    def subscribe(
        self,
        stream_id: str,
        name: str,
        policy: Policy = "latest",
        capacity: int = 1,
        frame_rate: float | None = None,
        size: tuple[int, int] | None = None,
        aligned: bool = False,
    ) -> Subscription:
        sub = Subscription(stream_id, name, policy, capacity, frame_rate, size, aligned)
        with self._lock:
            self._subs[stream_id] = (*self._subs.get(stream_id, ()), sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub.close()
        with self._lock:
            remaining = tuple(s for s in self._subs.get(sub.stream_id, ()) if s is not sub)
            if remaining:
                self._subs[sub.stream_id] = remaining
            else:
                self._subs.pop(sub.stream_id, None)

    def close_stream(self, stream_id: str) -> None:
        """Ends every subscription of a removed stream (their iterators finish)."""
        with self._lock:
            subs = self._subs.pop(stream_id, ())
            self._latest.pop(stream_id, None)
        for sub in subs:
            sub.close()

    def subscriptions(self, stream_id: str) -> tuple[Subscription, ...]:
        return self._subs.get(stream_id, ())
