"""A long-lived Redis connection on the event loop that survives Redis going away: each piece
of work runs with a fresh client and is restarted with back-off when Redis fails, with the
state (``connected``, ``reconnects``, ``last_error``) that ``/api/status`` reports."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("vlm_monitor.redis")


class RedisLink:
    def __init__(self, url: str, what: str) -> None:
        self.url, self.what = url, what
        self.connected = False
        self.reconnects = 0
        self.last_error: str | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def run(self, work: Callable[[aioredis.Redis], Awaitable[None]], name: str) -> None:
        self._tasks.append(asyncio.create_task(self._keep(work), name=name))

    async def stop_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def up(self) -> None:
        if not self.connected:
            log.info(f"{self.what} connected")
        self.connected, self.last_error = True, None

    async def _keep(self, work: Callable[[aioredis.Redis], Awaitable[None]]) -> None:
        delay = 0.2
        while True:
            client = aioredis.from_url(self.url, socket_connect_timeout=2, socket_keepalive=True)
            try:
                await work(client)
            except (RedisError, OSError) as exc:
                if self.connected or self.last_error is None:
                    log.warning(f"{self.what} lost", extra={"fields": {"error": str(exc)}})
                self.connected = False
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.reconnects += 1
            else:
                delay = 0.2
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await client.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
