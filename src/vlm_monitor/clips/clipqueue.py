"""The queue between the clip writer and the inference threads."""

from __future__ import annotations

import collections
import threading
import time

from vlm_monitor.clips.types import VideoInfo


class ClipQueue:
    """Bounded clip queue with blocking put and a staleness-aware get."""

    def __init__(self, maxsize: int, deadline_s: float, policy: str) -> None:
        self.maxsize, self.deadline_s, self.policy = maxsize, deadline_s, policy
        self._items: collections.deque[VideoInfo] = collections.deque()
        self._cond = threading.Condition()

    def qsize(self) -> int:
        return len(self._items)

    def put(self, info: VideoInfo, stop: threading.Event) -> bool:
        with self._cond:
            while len(self._items) >= self.maxsize:
                if stop.is_set():
                    return False
                self._cond.wait(0.2)
            self._items.append(info)
            self._cond.notify_all()
            return True

    def get(self, timeout: float) -> tuple[VideoInfo | None, list[VideoInfo]]:
        """(clip to run or None, clips dropped as stale)."""
        dropped: list[VideoInfo] = []
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            now = time.time()
            if self.policy == "latest_wins" and len(self._items) > 1:
                while len(self._items) > 1:
                    dropped.append(self._items.popleft())
            while self._items:
                info = self._items.popleft()
                if now - info.end_timestamp > self.deadline_s:
                    dropped.append(info)
                    continue
                self._cond.notify_all()
                return info, dropped
            self._cond.notify_all()
            return None, dropped

    def drain(self) -> list[VideoInfo]:
        with self._cond:
            items = list(self._items)
            self._items.clear()
            self._cond.notify_all()
            return items
