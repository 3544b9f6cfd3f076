"""Runs each stream's analyzers: hub subscription -> worker pool -> typed results.

Scheduling: one asyncio task per (stream, analyzer) takes frames from a hub subscription
decimated to the analyzer's rate and hands one frame at a time to a shared thread pool.
While a frame is being analysed, newer frames replace each other in the subscription
(counted as ``dropped``), so a slow analyzer falls back to the newest frame and never builds
a queue; an analyzer with a ``backlog_s`` (heart rate) keeps that many seconds of frames in
order instead, the oldest dropped when full. The pool's own queue holds at most one job per
(stream, analyzer). OpenCV, NumPy and the TFLite interpreter release the GIL and frames are
shared without copying, which serves a few streams best; with ``analysis.processes`` the
analysis runs in child processes instead (``processes``), past the one interpreter's limit
(bench/capacity_e2e.py measures both). When the machine cannot keep up,
``overload.LoadGovernor`` sheds every runner's rate evenly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from vlm_monitor.aio import cancel_and_wait
from vlm_monitor.analyzers.base import AnalysisResult, Analyzer, SharedModels, StreamContext
from vlm_monitor.analyzers.builtin import ANALYZERS, build_analyzers
from vlm_monitor.analyzers.overload import LoadGovernor
from vlm_monitor.analyzers.params import DEFAULT_FPS, PARAMS
from vlm_monitor.analyzers.processes import (
    AnalyzerProcesses,
    ProcessAnalyzerError,
    cpu_times,
    usable_cores,
)
from vlm_monitor.analyzers.remote import RemoteAnalysis
from vlm_monitor.analyzers.stats import RunnerStats
from vlm_monitor.config import AnalysisConfig, StreamConfig
from vlm_monitor.hub import StreamHub, Subscription
from vlm_monitor.types import Frame

log = logging.getLogger("vlm_monitor.analyzers")
STOP_WAIT_S = 5.0


class AnalyzerRunner:
    """One analyzer on one stream, run in this process's thread pool or in an analyzer
    process."""

    def __init__(
        self,
        analyzer: Analyzer,
        sub: Subscription,
        size: tuple[int, int] | None,
        pool: ThreadPoolExecutor,
        on_result: Callable[[AnalysisResult], None],
        processes: AnalyzerProcesses | None = None,
    ) -> None:
        """``processes``: run the analysis there (the stream was placed on one), not in
        ``pool``."""
        self.analyzer, self.sub, self.size, self.pool = analyzer, sub, size, pool
        self.on_result, self.processes = on_result, processes
        self.stats = RunnerStats(sub.stream_id, analyzer.name, analyzer.fps)
        self.task: asyncio.Task[None] | None = None
        self.busy_s = 0.0  # written by the one job in flight, read by the governor

    @property
    def stream_id(self) -> str:
        return self.sub.stream_id

    @property
    def name(self) -> str:
        return self.analyzer.name

    @property
    def target_fps(self) -> float:
        return self.analyzer.fps

    def counters(self) -> tuple[int, int, float]:
        return self.sub.stats.delivered, self.sub.stats.dropped, self.busy_s

    def shed(self, fps: float) -> None:
        if fps != self.sub.frame_rate:
            self.sub.set_frame_rate(fps)

    def _analyze(self, frame: Frame) -> dict[str, Any] | None:
        start = time.perf_counter()
        try:
            # The shared downscale: one conversion per frame for every consumer of this size.
            return self.analyzer.analyze(frame.analysis_bgr(self.size), frame)
        finally:
            self.busy_s += time.perf_counter() - start

    async def run(self) -> None:
        if self.processes is not None:
            await self._run_in_process(self.processes)
            return
        loop = asyncio.get_running_loop()
        async for frame in self.sub:
            try:
                payload = await loop.run_in_executor(self.pool, self._analyze, frame)
            except Exception as exc:
                self.stats.failed(f"{type(exc).__name__}: {exc}", exc)
                continue
            self._publish(frame, payload)

    async def _run_in_process(self, processes: AnalyzerProcesses) -> None:
        """Jobs go to the process in frame order, several in flight, so the round trip
        through this busy server does not bound the rate (the process runs them one after
        the other; results are published in frame order). An analyzer with a backlog keeps
        that many in flight; one without has the next frame queued behind the running one
        (at most one job older than the newest when it runs), where a thread would wait for
        the newest: with 24 students on 2 cores, emotion kept 4.89 of its 5 fps this way and
        4.74 waiting."""
        window = asyncio.Semaphore(max(2, self.sub.capacity))
        previous: asyncio.Task[None] | None = None
        while True:
            await window.acquire()
            frame = await self.sub.next()
            if frame is None:
                break
            job = processes.submit(self.stream_id, self.name, frame, self.size)
            previous = asyncio.create_task(self._finish(frame, job, previous, window))
        if previous is not None:
            await asyncio.wait([previous])

    async def _finish(
        self,
        frame: Frame,
        job: asyncio.Future[tuple[dict[str, Any] | None, float]],
        previous: asyncio.Task[None] | None,
        window: asyncio.Semaphore,
    ) -> None:
        try:
            try:
                payload, busy = await job
                self.busy_s += busy
            except ProcessAnalyzerError as exc:  # its text names the error's type already
                self.stats.failed(str(exc))
                return
            finally:
                if previous is not None:  # in frame order, however the one before ended
                    await asyncio.wait([previous])
            self._publish(frame, payload)
        except Exception as exc:  # a failure to publish must not end the runner's results
            self.stats.failed(f"{type(exc).__name__}: {exc}", exc)
        finally:
            window.release()

    def _publish(self, frame: Frame, payload: dict[str, Any] | None) -> None:
        if payload is None:
            self.stats.analysed(None)
            return
        self.analyzer.context.latest[self.name] = payload
        latency = time.time() - frame.ts
        self.stats.analysed(latency)
        self.on_result(
            AnalysisResult(self.stream_id, self.name, frame.seq, frame.ts, latency, payload)
        )

    def status(self) -> dict[str, Any]:
        self.stats.dropped = self.sub.stats.dropped  # newer frames came while one was analysed
        running = self.sub.frame_rate  # below the target while overload sheds
        status = {
            **self.stats.status(),
            "fps_running": None if running is None else round(running, 2),
        }
        if self.processes is not None:
            status["where"] = f"process {self.processes.placed(self.stream_id)}"
        return status


class AnalyzerService:
    """A StreamHooks: starts a stream's analyzers with the stream, stops them with it.
    Lives on the event loop; the hooks (called from worker threads) hop onto it."""

    def __init__(
        self,
        hub: StreamHub,
        config: AnalysisConfig,
        publish: Callable[[AnalysisResult], None],
        redis: tuple[str, str, str] | None = None,
    ) -> None:
        """``redis``: (url, channel, node) when ``analysis.dispatch`` is redis."""
        self.hub = hub
        self.publish = publish
        threads = config.threads or os.cpu_count() or 2
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="analyzer")
        self.processes: AnalyzerProcesses | None = None
        if config.processes and redis is None:
            self.processes = AnalyzerProcesses(config.processes)
        # One job at a time per thread, or per process: what "busy" is measured against.
        self.governor = LoadGovernor(config.overload, config.processes or threads, usable_cores())
        self._governing: asyncio.Task[None] | None = None
        self.models = SharedModels()
        self.remote: RemoteAnalysis | None = None
        if redis is not None:
            url, channel, node = redis
            self.remote = RemoteAnalysis(
                hub, url, channel, node, config.max_backlog, self.pool, publish
            )
        self.remote_stats: dict[str, dict[str, RunnerStats]] = {}
        self.running: dict[str, dict[str, AnalyzerRunner]] = {}
        self.contexts: dict[str, StreamContext] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        # Serialises start/stop: two overlapping changes of one stream must not both start.
        self._lock = asyncio.Lock()

    async def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        if self.remote is not None:
            await self.remote.start()
        else:
            if self.processes is not None:
                await self.processes.start()
            self._governing = asyncio.create_task(self._govern(), name="analyzer-governor")

    async def _govern(self) -> None:
        while True:
            await asyncio.sleep(self.governor.config.period_s)
            try:
                runners = [r for rs in self.running.values() for r in rs.values()]
                children = [] if self.processes is None else self.processes.pids()
                self.governor.measure(runners, cpu=cpu_times(children))
            except Exception:  # a bug here must not end overload handling for good
                log.exception("analyzer load measurement failed")

    def admit(self, stream: StreamConfig) -> None:
        """Raises CapacityError when this machine cannot take the stream's analyzers without
        breaking the running ones (see ``overload``). Remote analyzers are the workers'."""
        if stream.analyzers and self.remote is None and stream.id not in self.running:
            self.governor.admit(stream.id)

    def degraded(self, stream_id: str) -> dict[str, Any] | None:
        if stream_id not in self.running:
            return None
        return self.governor.degraded(stream_id)

    async def start(self, stream: StreamConfig) -> None:
        """Starts the stream's analyzers, replacing any that run. Raises ValueError when an
        analyzer cannot start (e.g. OCR without Tesseract); none of them run then."""
        async with self._lock:
            await self._stop(stream.id)
            self._start(stream)

    def _start(self, stream: StreamConfig) -> None:
        if not stream.analyzers:
            return
        if self.remote is not None:
            stats: dict[str, RunnerStats] = {
                a.name: RunnerStats(stream.id, a.name, a.rate) for a in stream.analyzers
            }
            self.remote.add(stream, stats)
            self.remote_stats[stream.id] = stats
            log.info(
                "analyzers dispatched to redis workers",
                extra={"fields": {"stream": stream.id, "analyzers": list(stats)}},
            )
            return
        try:
            context, analyzers = build_analyzers(stream.id, stream.analyzers, self.models)
        except Exception as exc:
            raise ValueError(f"stream {stream.id}: {exc}") from exc
        runners = {}
        for analyzer in analyzers.values():
            backlog = math.ceil(analyzer.fps * analyzer.backlog_s)
            sub = self.hub.subscribe(
                stream.id,
                f"analyzer:{analyzer.name}",
                "ring" if backlog else "latest",
                capacity=max(1, backlog),
                frame_rate=self.governor.start_rate(analyzer.name, analyzer.fps),
                size=stream.analysis_dims,
            )
            runner = AnalyzerRunner(
                analyzer, sub, stream.analysis_dims, self.pool, self.publish, self.processes
            )
            runner.task = asyncio.create_task(
                runner.run(), name=f"analyzer-{stream.id}-{analyzer.name}"
            )
            runners[analyzer.name] = runner
        where = "threads"
        if self.processes is not None:
            where = f"process {self.processes.add(stream.id, stream.analyzers)}"
        self.contexts[stream.id] = context
        self.running[stream.id] = runners
        log.info(
            "analyzers started",
            extra={"fields": {"stream": stream.id, "analyzers": list(runners), "where": where}},
        )

    async def stop(self, stream_id: str) -> None:
        async with self._lock:
            await self._stop(stream_id)

    async def _stop(self, stream_id: str) -> None:
        if self.remote is not None:
            self.remote_stats.pop(stream_id, None)
            await self.remote.remove(stream_id)
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
        if self.processes is not None:
            self.processes.remove(stream_id)

    async def stop_all(self) -> None:
        await cancel_and_wait(self._governing)
        await asyncio.gather(*(self.stop(sid) for sid in {*self.running, *self.remote_stats}))
        if self.remote is not None:
            await self.remote.stop()
        if self.processes is not None:
            await self.processes.stop()
        await asyncio.to_thread(self.pool.shutdown, wait=True, cancel_futures=True)

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
        remote = self.remote_stats.get(stream_id)
        if remote is not None:
            return {  # workers run them at the configured rates
                name: {**s.status(), "fps_running": s.fps_target, "where": "redis"}
                for name, s in remote.items()
            }
        return {name: r.status() for name, r in self.running.get(stream_id, {}).items()}

    def latest(self, stream_id: str, analyzer: str) -> dict[str, Any] | None:
        if self.remote is not None:
            return self.remote.latest(stream_id, analyzer)
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
