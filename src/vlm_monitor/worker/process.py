"""What one ``vlm-monitor worker --redis-url`` process shares between its job loops."""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from vlm_monitor.jobs.keys import keys

log = logging.getLogger("vlm_monitor.jobs")


class WorkerProcess:
    """The Redis client (thread-safe: each blocking call takes its own pooled connection),
    the worker's name, the stop flag, and the counters of its heartbeat in
    ``{channel}:workers``."""

    def __init__(self, url: str, channel: str, name: str | None, kinds: list[str]) -> None:
        self.client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10)
        self.channel, self.keys, self.kinds = channel, keys(channel), kinds
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.counts: collections.Counter[str] = collections.Counter()
        self.stop = threading.Event()

    def beat(self) -> None:
        doc = {"host": socket.gethostname(), "pid": os.getpid(), "last_heartbeat": time.time(),
               "kinds": self.kinds, **self.counts}  # fmt: skip
        self.client.hset(self.keys["workers"], self.name, json.dumps(doc))

    def loop(self, step: Callable[[], None], deadline: float | None) -> None:
        """Runs ``step`` until stopped, riding out Redis outages."""
        while not self.stop.is_set() and (deadline is None or time.monotonic() < deadline):
            try:
                self.beat()
                step()
            except redis.RedisError as exc:
                log.warning("redis unavailable; retrying", extra={"fields": {"error": str(exc)}})
                self.stop.wait(1.0)

    def live_workers(self, kind: str, within_s: float) -> int:
        now, live = time.time(), 0
        for doc in self.client.hgetall(self.keys["workers"]).values():
            with contextlib.suppress(ValueError, TypeError, KeyError):
                w = json.loads(doc)
                live += kind in w.get("kinds", ["clip"]) and now - w["last_heartbeat"] < within_s
        return max(live, 1)

    def pending_attempts(self, stream: str, group: str, entry_id: str) -> int:
        pending = self.client.xpending_range(stream, group, entry_id, entry_id, 1)
        return int(pending[0]["times_delivered"]) if pending else 1

    def dead_letter(self, pipe: Any, job: Any, reason: str) -> None:
        self.counts["dead"] += 1
        pipe.xadd(
            self.keys["dead"], {"job": json.dumps(job), "reason": reason, "worker": self.name}
        )
