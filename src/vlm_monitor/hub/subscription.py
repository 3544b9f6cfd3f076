"""A subscriber's view of one stream: its own queue policy and frame rate.

Policies: ``latest`` keeps only the newest frame; ``ring`` keeps the newest ``capacity``
frames and drops the oldest when full. Both are bounded, so a slow or dead consumer costs the
producer one append under a lock and never slows the source or other subscribers. The frame
rate limit decimates by frame timestamp (not by counting frames), so it holds whatever the
source rate and across reconnects. An ``aligned`` limit takes the first frame of each slot of a
wall-clock grid instead, so every aligned subscriber at one rate takes the same frames (live
viewers then share one encode per frame), at the cost of less tolerance for jitter near the
source's own rate.

``offer`` is called by the producer (any thread) and returns the asyncio waiter to wake, if
any, so the hub wakes all of a loop's consumers with one ``call_soon_threadsafe`` per frame.
Consumers use ``get`` (threads) or ``await next()`` / ``async for`` (asyncio; the subscription
must be created on that loop).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import math
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

from vlm_monitor.types import Frame

Policy = Literal["latest", "ring"]
_ids = itertools.count(1)
# Rate limit as a token bucket in frames: credit accrues at the asked rate by frame time, a
# frame is taken at EARLY credit short of a whole one (decode jitter moves frames by
# milliseconds) and costs one; at most BURST frames' credit is kept, so the two frames a
# decoder with B-frames releases together after a gap are both taken. The long-run rate is
# exact: credit stays between -EARLY and BURST.
EARLY = 0.4
BURST = 2.0


@dataclass
class SubscriptionStats:
    delivered: int = 0
    dropped: int = 0  # accepted by the rate limit, then pushed out before the consumer took it
    skipped: int = 0  # not wanted by the rate limit
    lag_s: float = 0.0  # age of the last delivered frame when it was handed over, seconds


def wake_all(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


class Subscription:
    def __init__(
        self,
        stream_id: str,
        name: str,
        policy: Policy = "latest",
        capacity: int = 1,
        frame_rate: float | None = None,
        size: tuple[int, int] | None = None,
        aligned: bool = False,
    ) -> None:
        if policy not in ("latest", "ring"):
            raise ValueError(f"unknown policy {policy!r}: use 'latest' or 'ring'")
        if policy == "ring" and capacity < 1:
            raise ValueError("ring capacity must be >= 1")
        if frame_rate is not None and frame_rate <= 0:
            raise ValueError("frame_rate must be > 0")
        self.id = f"sub-{next(_ids)}"
        self.stream_id, self.name, self.policy = stream_id, name, policy
        self.capacity = 1 if policy == "latest" else capacity
        self.frame_rate = frame_rate
        self.size = size  # the BGR size this consumer will ask for, a hint for status only
        self.stats = SubscriptionStats()
        self.closed = False
        self._buf: collections.deque[Frame] = collections.deque(maxlen=self.capacity)
        self._cond = threading.Condition(threading.Lock())
        self._interval = 1.0 / frame_rate if frame_rate else 0.0
        self._credit = 1.0
        self._last_ts: float | None = None
        self._aligned = aligned
        self._last_slot = -1
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            pass

    def offer(self, frame: Frame) -> asyncio.Future[None] | None:
        with self._cond:
            if self.closed:
                return None
            if self._interval and self._aligned:
                slot = math.floor(frame.capture_ts / self._interval)
                if slot <= self._last_slot:
                    self.stats.skipped += 1
                    return None
                self._last_slot = slot
            elif self._interval:
                if self._last_ts is not None:
                    gained = max(0.0, frame.capture_ts - self._last_ts) / self._interval
                    self._credit = min(BURST, self._credit + gained)
                self._last_ts = frame.capture_ts
                if self._credit < 1.0 - EARLY:
                    self.stats.skipped += 1
                    return None
                self._credit -= 1.0
            if len(self._buf) == self.capacity:
                self.stats.dropped += 1
            self._buf.append(frame)
            self._cond.notify()
            return self._waiter

    def set_frame_rate(self, frame_rate: float | None) -> None:
        """Changes the rate limit from the next frame on (overload shedding)."""
        if frame_rate is not None and frame_rate <= 0:
            raise ValueError("frame_rate must be > 0")
        with self._cond:
            self.frame_rate = frame_rate
            self._interval = 1.0 / frame_rate if frame_rate else 0.0
            self._credit, self._last_ts = 1.0, None

    def _take(self) -> Frame:
        frame = self._buf.popleft()
        self.stats.delivered += 1
        self.stats.lag_s = time.time() - frame.ts
        return frame

    def get(self, timeout: float | None = None) -> Frame | None:
        """Next frame for a thread consumer; None on timeout or once closed and drained."""
        with self._cond:
            self._cond.wait_for(lambda: self._buf or self.closed, timeout)
            return self._take() if self._buf else None

    async def next(self, timeout: float | None = None) -> Frame | None:
        """Next frame for an asyncio consumer; None on timeout or once closed and drained."""
        if self._loop is None:
            raise RuntimeError("subscription was created outside an event loop; use get()")
        deadline = None if timeout is None else self._loop.time() + timeout
        while True:
            with self._cond:
                if self._buf:
                    return self._take()
                if self.closed:
                    return None
                waiter = self._loop.create_future()
                self._waiter = waiter
            try:
                remaining = None if deadline is None else deadline - self._loop.time()
                if remaining is not None and remaining <= 0:
                    return None
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                return None
            finally:
                with self._cond:
                    self._waiter = None

    async def __aiter__(self) -> AsyncIterator[Frame]:
        while (frame := await self.next()) is not None:
            yield frame

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
            waiter = self._waiter
        if waiter is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(wake_all, [waiter])

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def status(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "policy": self.policy,
            "capacity": self.capacity,
            "frame_rate": self.frame_rate,
            "queued": len(self._buf),
            "delivered": self.stats.delivered,
            "dropped": self.stats.dropped,
            "skipped": self.stats.skipped,
            "lag_s": round(self.stats.lag_s, 4),
        }
