"""The backend's side of analyzer jobs over Redis (``analysis.dispatch: redis``).

Per stream, one ``latest`` hub subscription at the fastest analyzer's rate feeds
``{channel}:jobs:analyze:{stream}``: each job is one frame as JPEG (at the stream's analysis
size), the displayed size of the source picture (``source``, so workers place boxes in source
pixels) and the names of the analyzers due on it. The job stream is capped at
``analysis.max_backlog`` entries; when workers fall behind, Redis drops the OLDEST frames
(live analysis wants the newest picture), counted as ``dropped``. The workers' side is
``worker/analysis_jobs.py``; both sides take the key names from ``jobs/keys.py``.

Results come back on this node's own stream ``{channel}:results:{node}`` (consumer group
``backend``) and go the way local results go: through the result sink. A frame analysed
twice (a worker died after answering, before acknowledging) is published once: recent result
keys are remembered, and SQLite keeps one row per (stream, analyzer, frame time).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import cv2
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from vlm_monitor.analyzers.base import AnalysisResult
from vlm_monitor.analyzers.schedule import DueByRate
from vlm_monitor.analyzers.stats import RunnerStats
from vlm_monitor.broadcast.redis_link import RedisLink
from vlm_monitor.config import StreamConfig
from vlm_monitor.hub import StreamHub, Subscription
from vlm_monitor.jobs.keys import analysis_keys
from vlm_monitor.types import Frame

RESULT_GROUP = "backend"
REGISTER_EVERY_S = 2.0
SEEN_KEYS = 20_000  # remembered result keys: minutes of results at 16 streams x 20/s
JPEG_QUALITY = 90


class RemoteFeed:
    """One stream's frames on their way to the workers, and its analyzers' statistics."""

    def __init__(
        self, stream: StreamConfig, sub: Subscription, stats: dict[str, RunnerStats]
    ) -> None:
        self.stream, self.sub, self.stats = stream, sub, stats
        self.configs = [a.model_dump(mode="json") for a in stream.analyzers]
        self.schedule = DueByRate({a.name: a.rate for a in stream.analyzers})
        self.latest: dict[str, dict[str, Any]] = {}
        self.task: asyncio.Task[None] | None = None


class RemoteAnalysis(RedisLink):
    def __init__(
        self,
        hub: StreamHub,
        url: str,
        channel: str,
        node: str,
        max_backlog: int,
        pool: Executor,
        publish: Callable[[AnalysisResult], None],
    ) -> None:
        super().__init__(url, "analysis jobs")
        self.hub, self.channel, self.node = hub, channel, node
        self.max_backlog, self.pool, self.publish = max_backlog, pool, publish
        self.results_key = f"{channel}:results:{node}"
        self.feeds: dict[str, RemoteFeed] = {}
        self.duplicates = 0
        self._seen: collections.OrderedDict[tuple[str, str, float], None] = (
            collections.OrderedDict()
        )
        self._client: aioredis.Redis = aioredis.from_url(url, socket_connect_timeout=2)

    async def start(self) -> None:
        self.run(self._collect, "analysis-results")

    async def stop(self) -> None:
        await self.stop_tasks()
        await self._client.aclose()

    def add(self, stream: StreamConfig, stats: dict[str, RunnerStats]) -> None:
        rate = max(a.rate for a in stream.analyzers)
        sub = self.hub.subscribe(
            stream.id, "analyzer:redis", "latest", frame_rate=rate, size=stream.analysis_dims
        )
        feed = RemoteFeed(stream, sub, stats)
        feed.task = asyncio.create_task(self._feed(feed), name=f"analysis-feed-{stream.id}")
        self.feeds[stream.id] = feed

    async def remove(self, stream_id: str) -> None:
        feed = self.feeds.pop(stream_id, None)
        if feed is None:
            return
        self.hub.unsubscribe(feed.sub)
        if feed.task is not None:
            feed.task.cancel()
            await asyncio.gather(feed.task, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            await self._client.hdel(analysis_keys(self.channel)["streams"], stream_id)

    def latest(self, stream_id: str, analyzer: str) -> dict[str, Any] | None:
        feed = self.feeds.get(stream_id)
        return None if feed is None else feed.latest.get(analyzer)

    def _encode(self, frame: Frame, feed: RemoteFeed) -> bytes:
        image = frame.analysis_bgr(feed.stream.analysis_dims)
        return bytes(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1])

    async def _feed(self, feed: RemoteFeed) -> None:
        loop = asyncio.get_running_loop()
        key = analysis_keys(self.channel, feed.stream.id)["jobs"]
        async for frame in feed.sub:
            due = feed.schedule.due(frame.capture_ts)
            if not due:
                continue
            jpeg = await loop.run_in_executor(self.pool, self._encode, frame, feed)
            meta = {"stream": feed.stream.id, "seq": frame.seq, "ts": frame.ts,
                    "capture_ts": frame.capture_ts, "due": due,
                    "source": list(frame.source_size), "analyzers": feed.configs,
                    "reply_to": self.results_key}  # fmt: skip
            try:
                pipe = self._client.pipeline(transaction=False)
                pipe.xlen(key)
                pipe.xadd(
                    key,
                    {"meta": json.dumps(meta), "jpeg": jpeg},
                    maxlen=self.max_backlog,
                    approximate=False,
                )
                waiting, _ = await pipe.execute()
            except (RedisError, OSError) as exc:
                for name in due:
                    feed.stats[name].dropped += 1
                    feed.stats[name].last_error = f"redis: {exc}"
                await asyncio.sleep(1.0)  # Redis is down: the subscription keeps the newest
                continue
            if int(waiting) >= self.max_backlog:  # the oldest frame was trimmed unseen
                for name in due:
                    feed.stats[name].dropped += 1

    async def _register(self, client: aioredis.Redis) -> None:
        """(Re)announces this node's streams, so workers find them even after Redis lost
        its memory; ``seen`` lets workers ignore streams of a node that is gone."""
        if not self.feeds:
            return
        now = time.time()
        docs: dict[str | bytes, str | bytes] = {
            sid: json.dumps({"node": self.node, "seen": now, "analyzers": list(f.schedule.rates)})
            for sid, f in self.feeds.items()
        }
        await client.hset(analysis_keys(self.channel)["streams"], mapping=docs)  # type: ignore[arg-type]

    async def _collect(self, client: aioredis.Redis) -> None:
        try:
            await client.xgroup_create(self.results_key, RESULT_GROUP, id="0", mkstream=True)
        except RedisError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self.up()
        next_register = 0.0
        # "0" first: results delivered to this node but not acknowledged before it lost Redis
        # or restarted; then ">" for new ones.
        start = "0"
        while True:
            if time.monotonic() >= next_register:
                await self._register(client)
                next_register = time.monotonic() + REGISTER_EVERY_S
            got: Any = await client.xreadgroup(
                RESULT_GROUP, self.node, {self.results_key: start}, count=200, block=1000
            )
            if start == "0" and not any(entries for _, entries in got or []):
                start = ">"
            ids = []
            for _, entries in got or []:
                for entry_id, fields in entries:
                    ids.append(entry_id)
                    self._deliver(fields.get(b"result"))
            if ids:
                pipe = client.pipeline(transaction=False)
                pipe.xack(self.results_key, RESULT_GROUP, *ids)
                pipe.xdel(self.results_key, *ids)
                await pipe.execute()

    def _deliver(self, raw: bytes | None) -> None:
        try:
            doc = json.loads(raw or b"")
            stream, analyzer, ts = doc["stream"], doc["analyzer"], float(doc["video_timestamp"])
        except (ValueError, KeyError, TypeError):
            return
        feed = self.feeds.get(stream)
        stats = None if feed is None else feed.stats.get(analyzer)
        if feed is None or stats is None:
            return  # analysis of this stream was stopped meanwhile
        key = (stream, analyzer, ts)
        if key in self._seen:
            self.duplicates += 1
            return
        self._seen[key] = None
        if len(self._seen) > SEEN_KEYS:
            self._seen.popitem(last=False)
        if doc.get("error"):
            stats.failed(f"worker {doc.get('worker')}: {doc['error']}")
            return
        payload = doc.get("payload")
        if payload is None:
            stats.analysed(None)
            return
        latency = time.time() - ts
        stats.analysed(latency)
        feed.latest[analyzer] = payload
        seq = int(doc.get("frame_seq", 0))
        self.publish(AnalysisResult(stream, analyzer, seq, ts, latency, payload, origin="worker"))

    def status(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "reconnects": self.reconnects,
            "last_error": self.last_error,
            "duplicates": self.duplicates,
            "streams": len(self.feeds),
        }
