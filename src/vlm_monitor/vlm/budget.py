"""``calls_per_minute`` shared by every server and worker on one Redis: each node's own count
would let N nodes spend N budgets. Fixed one-minute windows (a counter per provider and
minute, INCR then EXPIRE): simple and exact within the minute, at the price of a burst of up
to twice the budget across a minute's boundary."""

from __future__ import annotations

import logging
import threading
import time

import redis

log = logging.getLogger("vlm_monitor.vlm")


class SharedBudget:
    def __init__(self, client: redis.Redis, channel: str) -> None:
        self.client, self.channel = client, channel
        self._warned = False
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, channel: str) -> SharedBudget:
        return cls(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1), channel)

    def take(self, provider: str, limit: int) -> bool | None:
        """True: the call fits the shared budget (and is counted); False: the budget is spent;
        None: Redis did not answer, the caller counts on its own until it is back."""
        key = f"{self.channel}:vlm-budget:{provider}:{int(time.time() // 60)}"
        try:
            pipe = self.client.pipeline()
            pipe.incr(key)
            pipe.expire(key, 120)
            count, _ = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            with self._lock:
                if not self._warned:
                    self._warned = True
                    log.warning(
                        "shared VLM budget unreachable: counting on this node only",
                        extra={"fields": {"provider": provider, "error": str(exc)}},
                    )
            return None
        with self._lock:
            self._warned = False
        return int(count) <= limit
