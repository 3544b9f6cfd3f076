"""A stream's analyzers in ``vlm-monitor worker``: frames from the backend, results back to it.

Built the way the server builds them (``build_analyzers``), and scheduled the way it schedules
them: one subscription at the fastest analyzer's rate; each analyzer takes the frames due at
its own rate, one at a time, in a thread pool; while it works, a newer frame replaces the one
waiting for it (``dropped``), so a slow analyzer falls back to the newest picture instead of
building a queue. Face detection has threads of its own, as on the server.

Results go back in batches with ``POST /api/analyses``, which publishes them like the
server's own (session stamp, Socket.IO and ``/ws/events``, SQLite). While the backend is
unreachable they wait, up to ``MAX_PENDING``; past that the oldest are dropped: live readings
lose their worth with age, and the worker must not grow without bound.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
import httpx
import numpy as np

from vlm_monitor.analyzers.base import Analyzer, SharedModels
from vlm_monitor.analyzers.builtin import build_analyzers
from vlm_monitor.analyzers.schedule import DueByRate
from vlm_monitor.analyzers.stats import RunnerStats
from vlm_monitor.config import ConfigError, StreamConfig
from vlm_monitor.geometry import analysis_size
from vlm_monitor.hub.wire import FrameMessage
from vlm_monitor.sources.backoff import backoff_delay
from vlm_monitor.types import Frame
from vlm_monitor.worker.client import BackendVideoClient
from vlm_monitor.worker.latency import LatencyStats

log = logging.getLogger("vlm_monitor.worker")
BATCH = 100
MAX_PENDING = 5000
FLUSH_S = 5.0  # at the end, how long unsent results may still take
STOP_WAIT_S = 5.0


def _analyze_one(analyzer: Analyzer, frame: Frame) -> dict[str, Any] | None:
    return analyzer.analyze(frame.bgr(), frame)


class LatestSlot:
    """Hand-off of frames to one analyzer: only the newest waits."""

    def __init__(self, stats: RunnerStats) -> None:
        self.stats = stats
        self._frame: Frame | None = None
        self._ready = asyncio.Event()
        self.closed = False

    def put(self, frame: Frame) -> None:
        if self._frame is not None:
            self.stats.dropped += 1
        self._frame = frame
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def take(self) -> Frame | None:
        await self._ready.wait()
        self._ready.clear()
        frame, self._frame = self._frame, None
        return None if self.closed else frame


class ResultPoster:
    """Sends results to the backend in batches, in order, retrying what it could not send."""

    def __init__(self, backend_url: str, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            base_url=backend_url.rstrip("/"), headers=headers, timeout=10
        )
        self._pending: collections.deque[dict[str, Any]] = collections.deque()
        self._wake = asyncio.Event()
        self.posted = self.refused = self.dropped = 0

    def put(self, doc: dict[str, Any]) -> None:
        if len(self._pending) >= MAX_PENDING:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append(doc)
        self._wake.set()

    async def run(self, produced: asyncio.Event) -> None:
        """Until ``produced`` is set (no more results will come) and nothing is left."""
        failures = 0
        while self._pending or not produced.is_set():
            if not self._pending:
                self._wake.clear()
                waits = [asyncio.ensure_future(e.wait()) for e in (self._wake, produced)]
                _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
                continue
            batch = [self._pending.popleft() for _ in range(min(BATCH, len(self._pending)))]
            if await self._post(batch):
                failures = 0
                continue
            failures += 1
            room = MAX_PENDING - len(self._pending)  # newer results came meanwhile
            kept = batch[-room:] if room > 0 else []
            self.dropped += len(batch) - len(kept)
            self._pending.extendleft(reversed(kept))
            await asyncio.sleep(backoff_delay(failures, 0.5, 10.0, 0.2))

    async def _post(self, batch: list[dict[str, Any]]) -> bool:
        """False: worth another try (backend away or overloaded)."""
        try:
            resp = await self._http.post("/api/analyses", json={"results": batch})
        except httpx.HTTPError as exc:
            log.warning("backend unreachable; results wait", extra={"fields": {"error": str(exc)}})
            return False
        if resp.status_code >= 500 or resp.status_code in (408, 429):
            log.warning(
                "backend busy; results wait", extra={"fields": {"status": resp.status_code}}
            )
            return False
        if resp.status_code >= 400:
            # A refusal (token, unknown stream, invalid result) would be refused again.
            self.refused += len(batch)
            log.error(
                "backend refused results",
                extra={"fields": {"status": resp.status_code, "body": resp.text[:300]}},
            )
        else:
            self.posted += len(batch)
        return True

    def unsent(self) -> int:
        return len(self._pending)

    async def close(self) -> None:
        await self._http.aclose()


class StreamAnalysis:
    """One stream's analyzers, fed by a BackendVideoClient."""

    def __init__(
        self,
        stream: StreamConfig,
        threads: int = 0,
        frame_rate: float | None = None,
    ) -> None:
        self.stream = stream
        threads = threads or os.cpu_count() or 2
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="analyzer")
        try:
            _, self.analyzers = build_analyzers(stream.id, stream.analyzers, SharedModels())
        except Exception as exc:
            self._shutdown()
            raise ConfigError(f"stream {stream.id}: analyzers cannot start: {exc}") from exc
        self.rates: dict[str, float] = {a.name: a.rate for a in stream.analyzers}
        self.frame_rate = frame_rate or max(self.rates.values())
        self.stats = {n: RunnerStats(stream.id, n, r) for n, r in self.rates.items()}
        self.slots = {n: LatestSlot(self.stats[n]) for n in self.analyzers}
        self.frames = LatencyStats()
        self.reconnects = 0
        self._schedule = DueByRate(self.rates)

    def _shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _decode(self, msg: FrameMessage) -> Frame | None:
        image = cv2.imdecode(np.frombuffer(msg.jpeg, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            return None
        # The backend sends the displayed picture at full size: analysed within the stream's
        # pixel budget, its boxes placed back in the full size.
        source = (int(image.shape[1]), int(image.shape[0]))
        budget = self.stream.analysis_dims
        size = analysis_size(*source, budget)
        if size != source:
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return Frame(self.stream.id, msg.seq, msg.ts, image, source, msg.capture_ts)

    async def _read(self, client: BackendVideoClient) -> None:
        loop = asyncio.get_running_loop()
        async for msg in client.frames():
            self.frames.add(msg.seq, msg.ts)
            due = self._schedule.due(msg.ts if msg.capture_ts is None else msg.capture_ts)
            if not due:
                continue
            frame = await loop.run_in_executor(self.pool, self._decode, msg)
            if frame is None:
                log.warning("undecodable frame skipped", extra={"fields": {"seq": msg.seq}})
                continue
            for name in due:
                self.slots[name].put(frame)

    async def _analyze(self, analyzer: Analyzer, post: Callable[[dict[str, Any]], None]) -> None:
        loop = asyncio.get_running_loop()
        name, slot, stats = analyzer.name, self.slots[analyzer.name], self.stats[analyzer.name]
        while (frame := await slot.take()) is not None:
            try:
                payload = await loop.run_in_executor(self.pool, _analyze_one, analyzer, frame)
            except Exception as exc:
                stats.failed(f"{type(exc).__name__}: {exc}", exc)
                continue
            if payload is None:
                stats.analysed(None)
                continue
            analyzer.context.latest[name] = payload
            stats.analysed(time.time() - frame.ts)
            post(
                {"stream": frame.stream_id, "analyzer": name, "frame_seq": frame.seq,
                 "video_timestamp": frame.ts, "result": payload}
            )  # fmt: skip

    async def run(
        self,
        client: BackendVideoClient,
        post: Callable[[dict[str, Any]], None],
        stopping: asyncio.Event,
    ) -> None:
        """Until ``stopping`` is set; then the analyses under way finish. ``post``: where
        each result goes (a ResultPoster's ``put``)."""
        tasks = [
            asyncio.create_task(self._analyze(a, post), name=f"analyzer-{a.name}")
            for a in self.analyzers.values()
        ]
        reader = asyncio.create_task(self._read(client), name="frames")
        stop = asyncio.create_task(stopping.wait())
        try:
            await asyncio.wait({reader, stop}, return_when=asyncio.FIRST_COMPLETED)
            for slot in self.slots.values():
                slot.close()
            _, late = await asyncio.wait(tasks, timeout=STOP_WAIT_S)
            for task in late:
                task.cancel()
            if reader.done():
                reader.result()  # the reader only ends by failing: that failure is ours
        finally:
            self.reconnects = client.reconnects
            everything: list[asyncio.Task[Any]] = [reader, stop, *tasks]
            for task in everything:
                task.cancel()
            await asyncio.gather(*everything, return_exceptions=True)
            await asyncio.to_thread(self._shutdown)

    def summary(self) -> dict[str, Any]:
        return {
            **self.frames.summary(),
            "reconnects": self.reconnects,
            "analyzers": {n: s.status() for n, s in self.stats.items()},
        }
