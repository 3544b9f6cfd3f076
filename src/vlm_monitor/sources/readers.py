"""Blocking frame readers, one per kind of source. They run in the Source's thread only."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import av

from vlm_monitor.camera.scene import make_scene
from vlm_monitor.sources.url import SourceUrl


class StallError(RuntimeError):
    """The connection is up but no frame has been decoded for ``stall_timeout_s``."""


def _paced_sleep(stop: threading.Event, due: float) -> None:
    delay = due - time.monotonic()
    if delay > 0:
        stop.wait(delay)


def pyav_frames(
    url: str,
    *,
    options: dict[str, str],
    open_timeout: float,
    stall_timeout: float,
    threads: int,
    stop: threading.Event,
    on_decode_error: Callable[[], None],
    pace: bool = False,
    loop: bool = False,
) -> Iterator[Any]:
    """Yield ``av.VideoFrame`` objects from anything FFmpeg demuxes.

    ``pace`` plays a file at its native rate; ``loop`` restarts it at the end. Corrupt packets
    are counted through ``on_decode_error`` and skipped.
    """
    try:
        container = av.open(url, options=options, timeout=(open_timeout, stall_timeout))
    except av.error.InvalidDataError:
        on_decode_error()
        raise
    try:
        if not container.streams.video:
            raise StallError(f"{url}: no video stream")
        stream = container.streams.video[0]
        stream.codec_context.thread_count = threads
        last_frame = time.monotonic()
        clock_base: float | None = None
        while not stop.is_set():
            for packet in container.demux(stream):
                if stop.is_set():
                    return
                try:
                    frames = packet.decode()
                except av.error.FFmpegError:
                    on_decode_error()
                    frames = []
                now = time.monotonic()
                for frame in frames:
                    if pace and frame.time is not None:
                        if clock_base is None:
                            clock_base = now - frame.time
                        _paced_sleep(stop, clock_base + frame.time)
                    last_frame = time.monotonic()
                    yield frame
                if now - last_frame > stall_timeout:
                    raise StallError(f"no frame decoded for {stall_timeout:.1f} s")
            if not loop:
                return
            container.seek(0)
            stream.codec_context.flush_buffers()
            clock_base = None
    finally:
        container.close()


def synthetic_frames(source: SourceUrl, stop: threading.Event) -> Iterator[Any]:
    fps = float(source.params["fps"])
    width, height = (int(v) for v in source.params["size"].split("x"))
    p = source.params
    scene = make_scene(width, height, p["scene"], float(p["bpm"]), float(p["pulse"]))
    period = 1.0 / fps
    due = time.monotonic()
    seq = 0
    while not stop.is_set():
        _paced_sleep(stop, due)
        due = max(due + period, time.monotonic() - period)
        seq += 1
        yield scene.render(seq, time.time())
