"""Analyzer processes (``analysis.processes``): the local analyzers run in child processes,
so face work is not held back by the one interpreter lock that decoding, the event loop and
analyzer threads share in the server (at about 12 face streams on 2 cores the server could
not use both cores: see docs/benchmarks.md).

Each stream's analyzers live in one process (the one with the fewest streams), so their state
(face tracker, pulse window) stays together. The server keeps the hub subscriptions, rates and
overload handling. Jobs are queued in order to a sender thread per process, which converts
the frame to BGR at the analysis size (once per frame, as in-process), writes it to a
per-stream slot of shared memory (a file in /dev/shm: one copy, shared by every analyzer of
the stream that asks for that frame) and sends the process a small message (the jobs queued
by then, together); the payloads come back on the same pipe, together. A process that dies
is restarted with its streams (their state starts afresh); its jobs in flight fail with the
reason, as any analyzer error does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from vlm_monitor.analyzers import process_main
from vlm_monitor.analyzers.frame_slots import (
    SLOT_PREFIX,
    Slot,
    StreamSlots,
    remove_orphans,
    slot_dir,
)
from vlm_monitor.config import AnalyzerConfig
from vlm_monitor.types import Frame

log = logging.getLogger("vlm_monitor.analyzers")
STOP_WAIT_S = 5.0
RESTART_MAX_DELAY_S = 30.0
STEADY_S = 600.0  # a process that lived this long before dying is restarted without delay
BATCH = 64  # jobs in one message to a process, at most
Payload = dict[str, Any] | None


def cpu_times(children: list[int]) -> dict[int, float]:
    """CPU seconds used so far, by pid: this process (all its threads) and ``children`` (on
    Linux, from /proc; elsewhere this process alone)."""
    times = {os.getpid(): time.process_time()}
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for pid in children:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        times[pid] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return times


def usable_cores() -> float:
    """The cores this server may use: those it may run on, capped by a container's CPU quota
    (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), which ``os.cpu_count`` does not see."""
    cores = float(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0)
    cores = cores or float(os.cpu_count() or 1)
    quota: float | None = None
    with contextlib.suppress(OSError, ValueError):
        limit, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if limit != "max":
            quota = int(limit) / int(period)
    if quota is None:
        with contextlib.suppress(OSError, ValueError):
            limit = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text().strip()
            period = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text().strip()
            if int(limit) > 0:
                quota = int(limit) / int(period)
    return max(0.1, min(cores, quota)) if quota is not None else cores


class ProcessAnalyzerError(RuntimeError):
    """An analyzer failed in its process, or the process was not there to run it."""


Job = tuple[int, str, str, Frame, "tuple[int, int] | None", StreamSlots]
Reply = tuple[int, Payload, str | None, float]  # job, payload, error, seconds busy
Result = tuple[Payload, float]


@dataclass
class _Child:
    index: int
    process: multiprocessing.process.BaseProcess
    conn: Connection
    streams: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    pending: dict[int, asyncio.Future[Result]] = field(default_factory=dict)
    slots_held: dict[int, tuple[StreamSlots, Slot]] = field(default_factory=dict)
    outbox: queue.SimpleQueue[Job | None] = field(default_factory=queue.SimpleQueue)
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    restarts: int = 0
    streak: int = 0  # restarts in a row, each soon after the one before
    started: float = field(default_factory=time.monotonic)

    def send(self, msg: tuple[Any, ...]) -> None:
        with self.send_lock:
            self.conn.send(msg)

    def release(self, job: int) -> None:
        held = self.slots_held.pop(job, None)
        if held is not None:
            held[0].release(held[1])


class AnalyzerProcesses:
    """``count`` analyzer processes and the streams placed on them. Lives on the event
    loop."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.children: list[_Child] = []
        self._owner: dict[str, _Child] = {}
        self._slots: dict[str, StreamSlots] = {}
        self._jobs = itertools.count(1)
        self._streams_added = itertools.count(1)  # each stream's files get their own names
        self._dir = slot_dir()
        self._prefix = str(self._dir / f"{SLOT_PREFIX}{os.getpid()}")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._restarting: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        orphans = await asyncio.to_thread(remove_orphans, self._dir)
        if orphans:
            log.info("removed frame files of a server that was killed",
                     extra={"fields": {"files": orphans, "directory": str(self._dir)}})  # fmt: skip
        for index in range(self.count):
            self.children.append(await asyncio.to_thread(self._spawn, index))
        log.info(
            "analyzer processes started",
            extra={"fields": {"pids": [c.process.pid for c in self.children]}},
        )

    def _spawn(self, index: int, child: _Child | None = None) -> _Child:
        # spawn, not fork: the server has threads (decoders, the loop) whose locks a fork
        # would copy in whatever state they are.
        ctx = multiprocessing.get_context("spawn")
        ours, theirs = ctx.Pipe()
        process = ctx.Process(
            target=process_main.main, args=(theirs,), name=f"vlm-analyzer-{index}", daemon=True
        )
        process.start()
        theirs.close()
        if child is None:
            child = _Child(index, process, ours)
            threading.Thread(
                target=self._send, args=(child,), name=f"analyzer-send-{index}", daemon=True
            ).start()
        else:  # a restart: its streams first, then the jobs that follow
            with child.send_lock:
                for stream_id, configs in list(child.streams.items()):
                    ours.send(("add", stream_id, configs))
                child.process, child.conn = process, ours
                child.started = time.monotonic()
        threading.Thread(
            target=self._read, args=(child, ours), name=f"analyzer-read-{index}", daemon=True
        ).start()
        return child

    def _read(self, child: _Child, conn: Connection) -> None:
        """The replies of one process, until its pipe closes (it exited)."""
        assert self._loop is not None
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            with contextlib.suppress(RuntimeError):  # the loop is closed: the server is gone
                self._loop.call_soon_threadsafe(self._done, child, msg[1])
        child.process.join(1.0)  # reaped, so its exit code is known
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._died, child, conn)

    def _send(self, child: _Child) -> None:
        """Sends one process its jobs in the order they were submitted: those queued by the
        time it looks, up to ``BATCH``, in one message (with 32 face streams on 2 cores, one
        message and one wake-up per job took the server 0.88 cores, batches 0.79)."""
        running = True
        while running:
            items = [child.outbox.get()]
            while len(items) < BATCH:
                try:
                    items.append(child.outbox.get_nowait())
                except queue.Empty:
                    break
            if None in items:  # stop: the jobs queued before it still go
                items, running = items[: items.index(None)], False
            batch: list[tuple[Any, ...]] = []
            jobs: list[int] = []
            for job, stream_id, name, frame, size, slots in filter(None, items):
                try:
                    image = frame.analysis_bgr(size)  # the shared conversion, once per frame
                    slot, retired = slots.put(frame, image)
                except Exception as exc:  # a broken frame, a stopped stream: this job fails
                    self._reply(child, [(job, None, f"{type(exc).__name__}: {exc}", 0.0)])
                    continue
                child.slots_held[job] = (slots, slot)
                height, width = image.shape[:2]
                batch.extend(("unmap", path) for path in retired)
                shot = (frame.seq, frame.ts, frame.capture_ts, *frame.source_size)
                batch.append(("job", job, stream_id, name, str(slot.path), width, height, *shot))
                jobs.append(job)
            if not batch:
                continue
            try:
                child.send(("batch", batch))
            except Exception as exc:  # a dead process: these jobs fail
                why = f"{type(exc).__name__}: {exc}"
                self._reply(child, [(job, None, why, 0.0) for job in jobs])

    def _reply(self, child: _Child, replies: list[Reply]) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server is gone
            self._loop.call_soon_threadsafe(self._done, child, replies)

    def _done(self, child: _Child, replies: list[Reply]) -> None:
        for job, payload, error, busy in replies:
            child.release(job)
            fut = child.pending.pop(job, None)
            if fut is None or fut.done():
                continue
            if error is None:
                fut.set_result((payload, busy))
            else:
                fut.set_exception(ProcessAnalyzerError(error))

    def _fail_pending(self, child: _Child, why: str) -> None:
        for fut in child.pending.values():
            if not fut.done():
                fut.set_exception(ProcessAnalyzerError(why))
        child.pending.clear()
        for job in list(child.slots_held):
            child.release(job)

    def _died(self, child: _Child, conn: Connection) -> None:
        if self._stopping or conn is not child.conn:
            return
        with child.send_lock:
            conn.close()
        code = child.process.exitcode
        self._fail_pending(child, f"analyzer process {child.index} exited ({code})")
        child.restarts += 1
        now = time.monotonic()
        # Back off only while it keeps dying: a crash after a quiet while restarts at once.
        child.streak = child.streak + 1 if now - child.started < STEADY_S else 1
        delay = min(RESTART_MAX_DELAY_S, 2.0 ** (child.streak - 1) - 1)
        log.error(
            "analyzer process exited: restarting it",
            extra={"fields": {"process": child.index, "exitcode": code,
                              "streams": list(child.streams), "restarts": child.restarts,
                              "delay_s": delay}},
        )  # fmt: skip
        self._restarting.add(asyncio.get_running_loop().create_task(self._restart(child, delay)))

    async def _restart(self, child: _Child, delay: float) -> None:
        try:
            while not self._stopping:
                await asyncio.sleep(delay)
                try:
                    await asyncio.to_thread(self._spawn, child.index, child)
                except Exception as exc:  # no process now (out of memory, of pids): try later
                    delay = min(RESTART_MAX_DELAY_S, 2 * delay + 1)
                    log.error(
                        "analyzer process could not be started",
                        extra={"fields": {"process": child.index, "error": str(exc),
                                          "retry_in_s": delay}},
                    )  # fmt: skip
                    continue
                if self._stopping:  # stopped while it started: stop it too
                    await asyncio.to_thread(self._join, child)
                return
        finally:
            self._restarting.discard(asyncio.current_task())

    def add(self, stream_id: str, configs: list[AnalyzerConfig]) -> int:
        """Places the stream's analyzers on the process with the fewest streams; its index."""
        child = min(self.children, key=lambda c: len(c.streams))
        dumped = [c.model_dump(mode="json") for c in configs]
        child.streams[stream_id] = dumped
        self._owner[stream_id] = child
        self._slots[stream_id] = StreamSlots(
            f"{self._prefix}-{child.index}-{stream_id}-{next(self._streams_added)}"
        )
        with contextlib.suppress(OSError):  # a dead process gets it when it restarts
            child.send(("add", stream_id, dumped))
        return child.index

    def pids(self) -> list[int]:
        return [c.process.pid for c in self.children if c.process.pid is not None]

    def placed(self, stream_id: str) -> int | None:
        child = self._owner.get(stream_id)
        return None if child is None else child.index

    def remove(self, stream_id: str) -> None:
        child = self._owner.pop(stream_id, None)
        slots = self._slots.pop(stream_id, None)
        if child is None or slots is None:
            return
        child.streams.pop(stream_id, None)
        paths = slots.close()  # first: whether or not the process is there to hear of it
        with contextlib.suppress(OSError):
            child.send(("remove", stream_id))
            for path in paths:
                child.send(("unmap", path))

    def submit(
        self, stream_id: str, name: str, frame: Frame, size: tuple[int, int] | None
    ) -> asyncio.Future[Result]:
        """Queues the job; its future gives (payload, seconds the process spent), or raises
        ProcessAnalyzerError when the analyzer failed there."""
        result: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        child, slots = self._owner.get(stream_id), self._slots.get(stream_id)
        if child is None or slots is None:
            result.set_exception(ProcessAnalyzerError(f"{stream_id} has no analyzer process"))
            return result
        job = next(self._jobs)
        child.pending[job] = result
        child.outbox.put((job, stream_id, name, frame, size, slots))
        return result

    def status(self) -> list[dict[str, Any]]:
        return [
            {"index": c.index, "pid": c.process.pid, "alive": c.process.is_alive(),
             "streams": sorted(c.streams), "restarts": c.restarts, "in_flight": len(c.pending)}
            for c in self.children
        ]  # fmt: skip

    async def stop(self) -> None:
        self._stopping = True
        for child in self.children:
            child.outbox.put(None)
            self._fail_pending(child, "analyzers stopped")
        for stream_id in list(self._owner):
            self.remove(stream_id)
        for task in list(self._restarting):
            task.cancel()
        await asyncio.gather(*(asyncio.to_thread(self._join, c) for c in self.children))

    @staticmethod
    def _join(child: _Child) -> None:
        """Stops one process: asked first, killed if it does not go."""
        with child.send_lock, contextlib.suppress(OSError):
            child.conn.send(("stop",))
        child.process.join(STOP_WAIT_S)
        if child.process.is_alive():
            child.process.kill()
            child.process.join(STOP_WAIT_S)
        with child.send_lock:
            child.conn.close()
