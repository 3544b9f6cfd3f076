"""``vlm-monitor worker``: the separate inference service. It gets frames only through the
backend (``/internal/video/*``) and sends its results back to it, so they go out like the
server's own.

What it runs for its ``--stream``, from the stream's entry in ``--config``:
- ``analyzers``: run here (``worker/analyze.py``), results to ``POST /api/analyses``;
- ``clips``: the clip pipeline here (``worker/clips.py``), results to ``POST /api/results``;
- neither: nothing to do, exit 2 (a worker that silently infers nothing is a trap).
``--clips`` runs only the clip pipeline; ``--count-only`` only counts frames and measures their
latency (backend decode -> here); ``--redis-url`` takes jobs from Redis instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vlm_monitor.config import ClipsConfig, Config, StreamConfig, load_config
from vlm_monitor.worker.client import BackendVideoClient
from vlm_monitor.worker.latency import LatencyStats

log = logging.getLogger("vlm_monitor.worker")


async def run_worker(
    backend_url: str,
    stream: str,
    frame_rate: float | None,
    name: str,
    duration: float | None,
    report_every: float = 5.0,
    token: str | None = None,
) -> dict[str, object]:
    stats = LatencyStats()
    async with BackendVideoClient(backend_url, stream, name, frame_rate, token=token) as client:

        async def consume() -> None:
            next_report = time.monotonic() + report_every
            async for msg in client.frames():
                stats.add(msg.seq, msg.ts)
                if time.monotonic() >= next_report:
                    next_report += report_every
                    log.info(
                        "worker frames", extra={"fields": {"stream": stream, **stats.summary()}}
                    )

        try:
            await asyncio.wait_for(consume(), duration)
        except TimeoutError:
            pass
    summary = {"stream": stream, "name": name, **stats.summary(), "reconnects": client.reconnects}
    print(json.dumps({"worker_summary": summary}), flush=True)
    return summary


def command(args: argparse.Namespace) -> int:
    """``vlm-monitor worker``; raises ConfigError (exit 2) on a bad configuration."""
    config = load_config(args.config)
    # One request line per posted batch would bury what the worker itself has to say.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.redis_url:
        return _job_worker(args, config)
    stream_id = args.stream or (config.streams[0].id if config.streams else None)
    if stream_id is None:
        print(
            "vlm-monitor worker: --stream is required (or a config with streams)", file=sys.stderr
        )
        return 2
    backend_url = args.backend_url or config.worker.backend_url
    token = config.server.api_token
    stream = next((s for s in config.streams if s.id == stream_id), None)
    with contextlib.suppress(KeyboardInterrupt):
        if args.count_only:
            frame_rate = args.frame_rate or config.worker.frame_rate
            asyncio.run(
                run_worker(
                    backend_url, stream_id, frame_rate, args.name, args.duration, token=token
                )
            )
            return 0
        if args.clips:
            clips = (stream.clips if stream else None) or ClipsConfig()
            asyncio.run(_clips(args, backend_url, stream_id, clips, config))
            return 0
        if stream is None or not (stream.analyzers or stream.clips):
            print(f"vlm-monitor worker: {_nothing_to_do(stream_id, stream, args.config)}",
                  file=sys.stderr)  # fmt: skip
            return 2
        asyncio.run(_infer(args, backend_url, stream, config))
    return 0


def _nothing_to_do(stream_id: str, stream: StreamConfig | None, config: str | None) -> str:
    if config is None:
        what = "no --config names its analyzers or clips"
    elif stream is None:
        what = f"stream {stream_id!r} is not in {config}"
    else:
        what = f"stream {stream_id!r} has no analyzers and no clips in {config}"
    return (
        f"{what}, so there is nothing to infer. List them under the stream in the worker's "
        "--config (e.g. `analyzers: [motion, emotion]`, `clips: {...}`), or pass --count-only "
        "to only count frames and measure their latency."
    )


async def _clips(
    args: argparse.Namespace, backend_url: str, stream: str, clips: ClipsConfig, config: Config
) -> int:
    from vlm_monitor.worker.clips import run_clip_worker

    return await run_clip_worker(
        backend_url,
        stream,
        args.frame_rate or clips.input_fps,
        clips,
        config.vlm.providers,
        Path(args.data_dir),
        config.server.api_token,
        args.duration,
    )


async def _infer(
    args: argparse.Namespace, backend_url: str, stream: StreamConfig, config: Config
) -> None:
    """The stream's analyzers and its clip pipeline, until ``--duration`` or SIGTERM/SIGINT;
    then the results still unsent get ``FLUSH_S`` to reach the backend."""
    from vlm_monitor.worker.analyze import FLUSH_S, ResultPoster, StreamAnalysis

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    analysis = None
    if stream.analyzers:
        analysis = StreamAnalysis(stream, config.analysis.threads, args.frame_rate)
        log.info(
            "analyzers started",
            extra={"fields": {"stream": stream.id, "analyzers": list(analysis.analyzers)}},
        )
    token = config.server.api_token
    poster = ResultPoster(backend_url, token)
    # Set once nothing more can be produced: analyses under way at ``stopping`` still post.
    produced = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = [asyncio.create_task(poster.run(produced))]
    if stream.clips:
        # Its own subscription, at the clip pipeline's rate; it stops at --duration or when
        # cancelled.
        tasks.append(
            asyncio.create_task(_clips(args, backend_url, stream.id, stream.clips, config))
        )
    client = BackendVideoClient(
        backend_url, stream.id, args.name, analysis.frame_rate if analysis else None, token=token
    )
    try:
        if args.duration is not None:
            loop.call_later(args.duration, stopping.set)
        if analysis is not None:
            await analysis.run(client, poster.put, stopping)
        else:
            await stopping.wait()
        for task in tasks[1:]:
            task.cancel()  # its VLM calls under way may end (and post) while it stops
        if tasks[1:]:
            await asyncio.wait(tasks[1:], timeout=2 * FLUSH_S)
        produced.set()
        try:
            await asyncio.wait_for(asyncio.shield(tasks[0]), FLUSH_S)
        except TimeoutError:
            log.warning("results left unsent", extra={"fields": {"unsent": poster.unsent()}})
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
        await poster.close()
    summary: dict[str, Any] = {"stream": stream.id, "name": args.name}
    if analysis is not None:
        summary |= analysis.summary()
    summary |= {"posted": poster.posted, "refused": poster.refused,
                "dropped_results": poster.dropped, "unsent": poster.unsent()}  # fmt: skip
    print(json.dumps({"worker_summary": summary}), flush=True)


def _job_worker(args: argparse.Namespace, config: Config) -> int:
    """One loop per job kind, each on its own thread: a slow VLM clip job must not hold up a
    stream's live frames."""
    from vlm_monitor.vlm.budget import SharedLedger
    from vlm_monitor.worker.analysis_jobs import AnalysisWorker
    from vlm_monitor.worker.clip_jobs import JobWorker
    from vlm_monitor.worker.process import WorkerProcess

    name = None if args.name == "worker" else args.name
    process = WorkerProcess(args.redis_url, config.bus.channel, name, args.jobs)
    loops: dict[str, Callable[[float | None], None]] = {}
    if "clip" in args.jobs:
        clip = JobWorker(
            process, config.vlm.providers, args.claim_idle, args.max_attempts, config.vlm.budget
        )
        if config.vlm.shared_budgets:  # the workers make the calls of dispatch: redis clips
            clip.providers.share_budgets(SharedLedger(process.client, process.channel))
        loops["clip"] = clip.run
    if "analyze" in args.jobs:
        loops["analyze"] = AnalysisWorker(process, args.claim_idle, args.max_attempts).run
    deadline = None if args.duration is None else time.monotonic() + args.duration
    threads = [threading.Thread(target=run, args=(deadline,), name=f"jobs-{kind}")
               for kind, run in loops.items()]  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: process.stop.set())
    log.info("job worker started", extra={"fields": {"name": process.name, "jobs": args.jobs}})
    for thread in threads:
        thread.start()
    try:
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(0.5)
    except KeyboardInterrupt:
        process.stop.set()
        for thread in threads:
            thread.join()
    return 0
