"""What the job queues in Redis look like: for ``/api/status`` and ``/metrics``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import redis

from vlm_monitor.aio import cancel_and_wait
from vlm_monitor.jobs.keys import GROUP, analysis_keys, decode, keys

REFRESH_S = 2.0


def _queue(client: redis.Redis, key: str) -> dict[str, Any]:
    """Depth, lag (jobs no worker has read yet), in work (read, not acknowledged) and the
    age of the oldest job still there, from the job stream and its consumer group."""
    pipe = client.pipeline(transaction=False)
    pipe.xlen(key)
    pipe.xrange(key, count=1)
    queued, oldest = pipe.execute()
    try:
        group = next((g for g in client.xinfo_groups(key) if decode(g["name"]) == GROUP), {})
    except redis.ResponseError:  # no such stream yet
        group = {}
    lag = group.get("lag")
    age = None
    if oldest:
        age = round(max(0.0, time.time() - int(decode(oldest[0][0]).split("-")[0]) / 1000), 3)
    return {
        "queued": int(queued),
        # Redis cannot tell the lag once it has trimmed entries no one read: then every
        # queued job not in work is waiting.
        "lag": int(lag) if lag is not None else max(0, int(queued) - group.get("pending", 0)),
        "in_work": int(group.get("pending", 0)),
        "oldest_s": age,
    }


def queue_status(url: str, channel: str) -> dict[str, Any]:
    """Blocking: the clip queue, each analysed stream's queue and lease holder, the dead
    letters and the workers' heartbeats."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        k = keys(channel)
        workers = {decode(n): json.loads(d) for n, d in client.hgetall(k["workers"]).items()}
        analysis = {}
        for sid in sorted(decode(s) for s in client.hkeys(analysis_keys(channel)["streams"])):
            ak = analysis_keys(channel, sid)
            owner = client.get(ak["lease"])
            analysis[sid] = {
                **_queue(client, ak["jobs"]),
                "worker": None if owner is None else decode(owner),
            }
        return {
            **_queue(client, k["jobs"]),
            "dead": int(client.xlen(k["dead"])),
            "workers": workers,
            "analysis": analysis,
        }
    finally:
        client.close()


class JobStatusPoller:
    """Keeps a recent ``queue_status`` for ``/metrics``, whose collectors must never wait on
    Redis: a background task refreshes it every ``every_s``, whoever asks or not."""

    def __init__(self, url: str, channel: str, every_s: float = REFRESH_S) -> None:
        self.url, self.channel, self.every_s = url, channel, every_s
        self.latest: dict[str, Any] | None = None  # None until Redis first answered
        self._task: asyncio.Task[None] | None = None

    def refresh(self) -> dict[str, Any]:
        """Blocking: asks Redis now; raises RedisError when it cannot."""
        self.latest = queue_status(self.url, self.channel)
        return self.latest

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="job-status")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            # Redis away: the last answer stays (its heartbeat ages tell how old it is).
            with contextlib.suppress(redis.RedisError, OSError):
                await asyncio.to_thread(self.refresh)
            await asyncio.sleep(self.every_s)
