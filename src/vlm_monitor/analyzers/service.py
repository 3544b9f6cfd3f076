"""Runs each stream's analyzers: hub subscription -> worker pool -> typed results.

Scheduling: one asyncio task per (stream, analyzer) takes frames from a ``latest`` hub
subscription decimated to the analyzer's rate and hands one frame at a time to a shared
thread pool. While a frame is being analysed, newer frames replace each other in the
subscription (counted as ``dropped``), so a slow analyzer falls back to the newest frame and
never builds a queue; the pool's own queue holds at most one job per (stream, analyzer).
Threads, not processes: OpenCV, NumPy and the TFLite interpreter release the GIL, and frames
are shared without copying (see bench/analyzers.py for the measured capacity).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from vlm_monitor.analyzers.base import AnalysisResult, Analyzer, SharedModels, StreamContext
from vlm_monitor.analyzers.builtin import ANALYZERS
from vlm_monitor.analyzers.params import DEFAULT_FPS, PARAMS
from vlm_monitor.config import AnalysisConfig, StreamConfig
from vlm_monitor.hub import StreamHub, Subscription
from vlm_monitor.stats import percentile
from vlm_monitor.types import Frame

log = logging.getLogger("vlm_monitor.analyzers")
ERROR_LOG_EVERY_S = 10.0
STOP_WAIT_S = 5.0


class AnalyzerRunner:
    """One analyzer on one stream, with its statistics."""

    def __init__(
        self,
        analyzer: Analyzer,
        sub: Subscription,
        size: tuple[int, int] | None,
        pool: ThreadPoolExecutor,
        on_result: Callable[[AnalysisResult], None],
    ) -> None:
        self.analyzer, self.sub, self.size, self.pool = analyzer, sub, size, pool
        self.on_result = on_result
        self.frames = 0
        self.results = 0
        self.errors = 0
        self.last_error: str | None = None
        self._last_error_log = 0.0
        self._latencies: collections.deque[float] = collections.deque(maxlen=512)
        self._done: collections.deque[float] = collections.deque(maxlen=256)
        self.task: asyncio.Task[None] | None = None

    def _analyze(self, frame: Frame) -> dict[str, Any] | None:
        # The shared downscale: one conversion per frame for every consumer of this size.
        return self.analyzer.analyze(frame.bgr(self.size), frame)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        name, stream = self.analyzer.name, self.sub.stream_id
        async for frame in self.sub:
            try:
                payload = await loop.run_in_executor(self.pool, self._analyze, frame)
            except Exception as exc:
                self._failed(exc)
                continue
            now = time.time()
            self.frames += 1
            self._done.append(now)
            if payload is None:
                continue
            self.analyzer.context.latest[name] = payload
            latency = now - frame.ts
            self._latencies.append(latency)
            self.results += 1
            self.on_result(AnalysisResult(stream, name, frame.seq, frame.ts, latency, payload))

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_EVERY_S:  # one log line per burst
            self._last_error_log = now
            log.error(
                "analyzer failed",
                exc_info=exc,
                extra={
                    "fields": {
                        "stream": self.sub.stream_id,
                        "analyzer": self.analyzer.name,
                        "errors": self.errors,
                    }
                },
            )

    def status(self) -> dict[str, Any]:
        now = time.time()
        recent = [t for t in self._done if now - t <= 5.0]
        fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 2 else 0.0
        lat = list(self._latencies)
        return {
            "fps_target": self.analyzer.fps,
            "fps": round(fps, 2),
            "frames": self.frames,
            "results": self.results,
            "errors": self.errors,
            "last_error": self.last_error,
            "dropped": self.sub.stats.dropped,  # newer frames came while one was analysed
            "latency_p50_s": percentile(lat, 50),
            "latency_p99_s": percentile(lat, 99),
        }


class AnalyzerService:
    """A StreamHooks: starts a stream's analyzers with the stream, stops them with it.
    Lives on the event loop; the hooks (called from worker threads) hop onto it."""

    def __init__(
        self,
        hub: StreamHub,
        config: AnalysisConfig,
        publish: Callable[[AnalysisResult], None],
    ) -> None:
        self.hub = hub
        self.publish = publish
        threads = config.threads or os.cpu_count() or 2
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="analyzer")
        # Face detection (30-70 ms) gets threads of its own: in the shared pool it would hold
        # up the 1 ms per-frame jobs queued behind it, and 15 fps leaves 66 ms per frame.
        self.detect_pool = ThreadPoolExecutor(
            max(1, threads // 2), thread_name_prefix="face-detect"
        )
        self.models = SharedModels()
        self.running: dict[str, dict[str, AnalyzerRunner]] = {}
        self.contexts: dict[str, StreamContext] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        # Serialises start/stop: two overlapping changes of one stream must not both start.
        self._lock = asyncio.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    async def start(self, stream: StreamConfig) -> None:
        """Starts the stream's analyzers, replacing any that run. Raises ValueError when an
        analyzer cannot start (e.g. OCR without Tesseract); none of them run then."""
        async with self._lock:
            await self._stop(stream.id)
            self._start(stream)

    def _start(self, stream: StreamConfig) -> None:
        if not stream.analyzers:
            return
        detect_every = min(
            (float(a.params.get("detect_every_s", 1.0)) for a in stream.analyzers),
            default=1.0,
        )
        context = StreamContext(stream.id, self.models, detect_every, self.detect_pool)
        try:
            analyzers = [ANALYZERS[a.name](a, context) for a in stream.analyzers]
        except Exception as exc:
            raise ValueError(f"stream {stream.id}: {exc}") from exc
        runners = {}
        for analyzer in analyzers:
            sub = self.hub.subscribe(
                stream.id,
                f"analyzer:{analyzer.name}",
                "latest",
                frame_rate=analyzer.fps,
                size=stream.analysis_dims,
            )
            runner = AnalyzerRunner(analyzer, sub, stream.analysis_dims, self.pool, self.publish)
            runner.task = asyncio.create_task(
                runner.run(), name=f"analyzer-{stream.id}-{analyzer.name}"
            )
            runners[analyzer.name] = runner
        self.contexts[stream.id] = context
        self.running[stream.id] = runners
        log.info(
            "analyzers started",
            extra={"fields": {"stream": stream.id, "analyzers": list(runners)}},
        )

    async def stop(self, stream_id: str) -> None:
        async with self._lock:
            await self._stop(stream_id)

    async def _stop(self, stream_id: str) -> None:
        runners = self.running.pop(stream_id, {})
        self.contexts.pop(stream_id, None)
        for runner in runners.values():
            self.hub.unsubscribe(runner.sub)
        tasks = [r.task for r in runners.values() if r.task is not None]
        if tasks:
            # An analysis already in a thread finishes (at most one per runner); then the
            # subscription, closed above, ends each task.
            _, pending = await asyncio.wait(tasks, timeout=STOP_WAIT_S)
            for task in pending:
                task.cancel()

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.stop(sid) for sid in list(self.running)))
        for pool in (self.pool, self.detect_pool):
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    # StreamHooks: called from a worker thread by the stream manager.
    def on_stream_added(self, stream: StreamConfig) -> None:
        self._call(self._start_logged(stream))

    def on_stream_removed(self, stream_id: str) -> None:
        self._call(self.stop(stream_id))

    def _call(self, coro: Any) -> None:
        if self._loop is None:
            coro.close()
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing
            asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _start_logged(self, stream: StreamConfig) -> None:
        try:
            await self.start(stream)
        except ValueError as exc:
            log.error(
                "analyzers not started", extra={"fields": {"stream": stream.id, "error": str(exc)}}
            )

    def status(self, stream_id: str) -> dict[str, Any]:
        return {name: r.status() for name, r in self.running.get(stream_id, {}).items()}

    def latest(self, stream_id: str, analyzer: str) -> dict[str, Any] | None:
        context = self.contexts.get(stream_id)
        return None if context is None else context.latest.get(analyzer)


def available() -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "default_fps": DEFAULT_FPS[name],
            "stateful": cls.stateful,
            "params": PARAMS[name].model_json_schema(),
        }
        for name, cls in ANALYZERS.items()
    ]
