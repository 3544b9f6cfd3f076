"""An analyzer process: runs the analyzers of the streams the server gives it, one frame at
a time, on pictures the server leaves in shared memory (see ``processes``).

Messages, pickled tuples on one duplex pipe:

- server -> here: ``("add", stream_id, [analyzer config dicts])``, ``("remove", stream_id)``,
  ``("stop",)``, and ``("batch", [message, ...])`` of ``("job", job_id, stream_id, analyzer,
  path, width, height, seq, ts, capture_ts, source_width, source_height)`` and
  ``("unmap", path)`` messages, handled in order;
- here -> server: ``("done", [(job_id, payload or None, error text or None, seconds busy),
  ...])``: the jobs of a batch done so far, every ``REPLY_EVERY_S`` and at its end.

The process ends when the server says stop or its end of the pipe closes (the server died),
so it never outlives the server.
"""

from __future__ import annotations

import contextlib
import mmap
import signal
import time
from multiprocessing.connection import Connection
from typing import Any

import cv2
import numpy as np

from vlm_monitor.analyzers.base import Analyzer, SharedModels
from vlm_monitor.analyzers.builtin import build_analyzers
from vlm_monitor.config import AnalyzerConfig
from vlm_monitor.types import Frame

# Answers to a batch go back together, but at least this often while a long one runs. More
# often costs the server: answering every 5 ms, 40 students on 2 cores lost frames to it.
REPLY_EVERY_S = 0.05


class _Mapped:
    """The shared-memory files this process has open, by path."""

    def __init__(self) -> None:
        self._maps: dict[str, mmap.mmap] = {}

    def image(self, path: str, width: int, height: int) -> np.ndarray:
        mapped = self._maps.get(path)
        if mapped is None:
            with open(path, "rb") as f:
                mapped = self._maps[path] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        pixels = np.frombuffer(mapped, np.uint8, count=width * height * 3)
        return pixels.reshape(height, width, 3)

    def forget(self, path: str) -> None:
        mapped = self._maps.pop(path, None)
        if mapped is not None:
            with contextlib.suppress(BufferError):  # an array still viewing it: the GC will
                mapped.close()


def _analyze(
    streams: dict[str, dict[str, Analyzer] | str], mapped: _Mapped, job: tuple[Any, ...]
) -> tuple[dict[str, Any] | None, str | None]:
    _, _, stream_id, name, path, width, height, seq, ts, shot, src_w, src_h = job
    built = streams.get(stream_id, {})
    if isinstance(built, str):
        return None, built
    analyzer = built.get(name)
    if analyzer is None:
        return None, f"{name} is not running on {stream_id} in this analyzer process"
    try:
        image = mapped.image(path, width, height)  # gone: the stream was removed meanwhile
        frame = Frame(stream_id, seq, ts, image, (src_w, src_h), shot)
        return analyzer.analyze(image, frame), None
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"


def _build(
    stream_id: str, configs: list[dict[str, Any]], models: SharedModels
) -> dict[str, Analyzer] | str:
    """The stream's analyzers; or, when one cannot be built here (one registered in the
    server's code only, say), why: each of its jobs answers that instead of this process
    dying on it."""
    try:
        analyzers = [AnalyzerConfig.model_validate(c) for c in configs]
        return build_analyzers(stream_id, analyzers, models)[1]
    except Exception as exc:
        return f"cannot run in an analyzer process: {type(exc).__name__}: {exc}"


def main(conn: Connection) -> None:
    # Ctrl-C in a terminal, or a service manager's stop, signals the whole process group:
    # the server stops its analyzer processes itself, after the streams.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # One process per core: OpenCV's own thread pool would only fight the other processes
    # over the cores, for the small pictures analyzers give it.
    cv2.setNumThreads(1)
    models = SharedModels()
    streams: dict[str, dict[str, Analyzer] | str] = {}  # or why they could not be built
    mapped = _Mapped()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        replies: list[tuple[Any, ...]] = []
        sent = time.perf_counter()
        for item in msg[1] if msg[0] == "batch" else [msg]:
            kind = item[0]
            if kind == "job":
                start = time.perf_counter()
                payload, error = _analyze(streams, mapped, item)
                end = time.perf_counter()
                replies.append((item[1], payload, error, end - start))
                if end - sent >= REPLY_EVERY_S:  # a long batch: what is done goes now
                    conn.send(("done", replies))
                    replies, sent = [], end
            elif kind == "add":
                streams[item[1]] = _build(item[1], item[2], models)
            elif kind == "remove":
                streams.pop(item[1], None)
            elif kind == "unmap":
                mapped.forget(item[1])
            elif kind == "stop":
                return
        if replies:
            conn.send(("done", replies))
