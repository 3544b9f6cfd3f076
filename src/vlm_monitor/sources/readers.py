"""Blocking frame readers, one per kind of source. They run in the Source's thread only."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import av

from vlm_monitor.camera.scene import make_scene
from vlm_monitor.sources.display import Display
from vlm_monitor.sources.url import SourceUrl


class StallError(RuntimeError):
    """The connection is up but no frame has been decoded for ``stall_timeout_s``."""


class RefusedInputError(ValueError):
    """The input is of a kind this source never reads; retrying cannot help."""


# Demuxers that open further inputs named inside the bytes they read (playlists, concat
# lists, SDP session descriptions): a file or peer could name anything the server can reach.
MULTI_INPUT_FORMATS = frozenset({"concat", "hls", "dash", "sdp", "imf", "webm_dash_manifest"})
# A playlist hands over whole segments at once: played in real time, like a file.
PACED_FORMATS = frozenset({"hls"})
DEFAULT_RATE = 25.0  # frames per second when a stream states none (FFmpeg's image default)
MAX_RATE = 120.0  # no paced source plays faster, whatever its timestamps or rate claim
_MAX_STEP = 10.0  # a timestamp jump longer than this (s) is a discontinuity, not a pause
_MAX_LAG = 0.5  # after falling behind, catch up at most this much (s) in a burst
# FFmpeg's AVFMT_NOTIMESTAMPS: the demuxer invents timestamps (raw H.264/HEVC, MJPEG over
# HTTP, image sequences) by counting frames at a guessed rate, so they are not when frames
# were shot.
_NO_TIMESTAMPS = 0x0080


def _paced_sleep(stop: threading.Event, due: float) -> None:
    delay = due - time.monotonic()
    if delay > 0:
        stop.wait(delay)


class Pacer:
    """Plays frames in real time. Frames are spaced by their timestamps where those step
    forward plausibly; by the stream's nominal frame period where they are missing, repeat
    (a looped image), go backwards (a loop restarting) or jump. So no input, whatever its
    timestamps, is decoded faster than real time."""

    def __init__(self, stop: threading.Event, rate: float) -> None:
        self.stop = stop
        self.period = 1.0 / min(max(rate, 1.0), MAX_RATE)
        self.due: float | None = None
        self.last_time: float | None = None

    def wait(self, media_time: float | None) -> None:
        step = self.period
        if media_time is not None and self.last_time is not None:
            delta = media_time - self.last_time
            if 0 < delta <= _MAX_STEP:
                step = max(delta, 1.0 / MAX_RATE)
        self.last_time = media_time
        now = time.monotonic()
        self.due = now if self.due is None else max(self.due + step, now - _MAX_LAG)
        _paced_sleep(self.stop, self.due)


def nominal_rate(stream: Any) -> float:
    """The stream's frame rate as the demuxer sees it (guessed from the codec's timing
    first: raw H.264 states 25 on average but carries its true rate in the SPS)."""
    for rate in (stream.guessed_rate, stream.average_rate, stream.base_rate):
        if rate and 0 < float(rate) < 10_000:
            return float(rate)
    return DEFAULT_RATE


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
    display: Display | None = None,
    allow: frozenset[str] = frozenset(),
    on_packet: Callable[[Any, Any], None] | None = None,
) -> Iterator[Any]:
    """Yield ``av.VideoFrame`` objects from anything FFmpeg demuxes.

    ``pace`` plays a file in real time (see ``Pacer``); ``loop`` restarts it at the end.
    ``display`` learns the codec and turns pictures upright (their display rotation).
    Frames of formats without real timestamps come without ``pts``: they were shot when
    they arrived, as far as anyone can tell.
    Corrupt packets are counted through ``on_decode_error`` and skipped. Demuxers that open
    further inputs are refused with ``RefusedInputError``, but for those in ``allow`` (whose
    further inputs the ``protocol_whitelist`` option confines). ``on_packet(stream, packet)``
    sees every encoded video packet before it is decoded (event clips keep a ring of them).
    """
    pacer: Pacer | None = None
    last_frame = time.monotonic()
    while not stop.is_set():
        container = _open(url, options, (open_timeout, stall_timeout), on_decode_error, allow)
        try:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = threads
            if display is not None:
                display.opened(stream)
            if pacer is None and (pace or container.format.name in PACED_FORMATS):
                pacer = Pacer(stop, nominal_rate(stream))
            invented = bool(container.format.flags & _NO_TIMESTAMPS)
            while not stop.is_set():
                for packet in container.demux(stream):
                    if stop.is_set():
                        return
                    if on_packet is not None and packet.size:
                        on_packet(stream, packet)
                    try:
                        frames = packet.decode()
                    except av.error.FFmpegError:
                        on_decode_error()
                        frames = []
                    now = time.monotonic()
                    for frame in frames:
                        if pacer is not None:
                            pacer.wait(frame.time)
                        if invented:
                            frame.pts = None
                        last_frame = time.monotonic()
                        yield frame if display is None else display.upright(frame)
                    if now - last_frame > stall_timeout:
                        raise StallError(f"no frame decoded for {stall_timeout:.1f} s")
                if not loop:
                    return
                if time.monotonic() - last_frame > stall_timeout:  # a file decoding to nothing
                    raise StallError(f"no frame decoded for {stall_timeout:.1f} s")
                try:
                    container.seek(0)
                except av.error.FFmpegError:
                    break  # raw elementary streams (.h264) cannot seek: open the file again
                stream.codec_context.flush_buffers()
        except av.error.ExitError:  # PyAV's read timeout: connected, but nothing comes
            raise StallError(f"no data from the camera for {stall_timeout:.1f} s") from None
        finally:
            container.close()


def _open(
    url: str,
    options: dict[str, str],
    timeout: tuple[float, float],
    on_decode_error: Callable[[], None],
    allow: frozenset[str],
) -> Any:
    try:
        container = av.open(url, options=options, timeout=timeout)
    except av.error.InvalidDataError:
        on_decode_error()
        raise
    except av.error.ExitError:  # PyAV's open timeout: connected, but no stream to read
        raise StallError(f"nothing readable from the camera within {timeout[0]:.1f} s") from None
    name = container.format.name
    if name in MULTI_INPUT_FORMATS - allow:
        container.close()
        raise RefusedInputError(f"{name} input refused: it names other inputs to open")
    if not container.streams.video:
        kinds = sorted({str(s.type) for s in container.streams}) or ["nothing"]
        container.close()
        raise StallError(f"no video stream: the camera sends {' and '.join(kinds)} only")
    return container


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
