"""One Source per stream: the only connection to a camera, decoding in its own thread.

State machine: ``connecting -> live -> reconnecting -> live ...``; ``stopped`` after
``stop()`` (or the end of a non-looping file); ``failed`` after ``reconnect.max_attempts``
failed attempts in a row. Every attempt, the first included, is retried with exponential
back-off and jitter.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import av

from vlm_monitor.config import StreamConfig
from vlm_monitor.media_clock import MediaClock
from vlm_monitor.sources.backoff import backoff_delay
from vlm_monitor.sources.display import Display
from vlm_monitor.sources.failures import describe
from vlm_monitor.sources.readers import (
    RefusedInputError,
    StallError,
    pyav_frames,
    synthetic_frames,
)
from vlm_monitor.sources.url import SourceUrl, parse_stream_source, redact_url
from vlm_monitor.types import Frame, StreamState
from vlm_monitor.webrtc.inbox import WhipInbox

log = logging.getLogger("vlm_monitor.sources")

FrameSink = Callable[[Frame], None]
StateSink = Callable[["Source"], None]
_FPS_WINDOW_S = 2.0
FAST_START = {"probesize": "65536", "analyzeduration": "200000"}  # bytes, microseconds
# The camera's own answers (401, 404, 5xx): the same whichever RTSP transport asks.
ANSWERS = (av.error.HTTPError, av.error.HTTPClientError, av.error.HTTPServerError)
# http(s):// is MJPEG or an HLS playlist, whose segments and keys come over these protocols
# only: a playlist naming file: (or any other FFmpeg protocol) segments gets nothing.
HTTP_OPTIONS = {"protocol_whitelist": "http,https,tcp,tls,crypto", "user_agent": "vlm-monitor"}


class Source:
    """Thread-safe to query; ``start``/``stop`` from any thread. ``stop`` blocks until the
    decoding thread has ended (at most about ``stall_timeout_s``): call it off the event loop."""

    def __init__(
        self,
        config: StreamConfig,
        on_frame: FrameSink,
        on_state: StateSink,
        inbox: WhipInbox | None = None,
    ) -> None:
        self.config = config
        self._inbox = inbox  # whip:// streams: frames pushed by a WebRTC publisher
        self.id = config.id
        self.spec: SourceUrl = parse_stream_source(config.url, config.listen)
        self._on_frame = on_frame
        self._on_state = on_state
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.state = StreamState.STOPPED
        self.last_error: str | None = None
        self.transport: str | None = None
        self.frames_in = 0
        self.decode_errors = 0
        self.reconnects = 0
        self.format_changes = 0  # the picture's size or codec changed (a camera reconfigured)
        self._format: tuple[int, int, str | None] | None = None
        self._clock = MediaClock()  # one time line across reconnects: it never goes back
        self.width = 0  # displayed shape: after the display rotation
        self.height = 0
        self.display = Display()
        self.last_frame_at: float | None = None  # unix seconds
        self._recent: collections.deque[float] = collections.deque(maxlen=512)
        # Every encoded packet of demuxed sources, on the decoding thread (event clips).
        self.on_packet: Callable[[Any, Any], None] | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"source {self.id} already started")
        self._thread = threading.Thread(target=self._run, name=f"source-{self.id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout if timeout is not None else self.config.stall_timeout_s + 5)

    @property
    def fps_in(self) -> float:
        now = time.monotonic()
        recent = [t for t in list(self._recent) if now - t <= _FPS_WINDOW_S]
        if len(recent) < 2:
            return 0.0
        span = max(recent[-1] - recent[0], 1e-6)
        return round((len(recent) - 1) / span, 2) if now - recent[-1] < 1.0 else 0.0

    def status(self) -> dict[str, Any]:
        age = None if self.last_frame_at is None else round(time.time() - self.last_frame_at, 3)
        return {
            "id": self.id,
            "url": redact_url(self.config.url),
            "state": str(self.state),
            "frames_in": self.frames_in,
            "fps_in": self.fps_in,
            "decode_errors": self.decode_errors,
            "reconnects": self.reconnects,
            "format_changes": self.format_changes,
            "last_frame_age_s": age,
            "width": self.width,
            "height": self.height,
            "rotation": self.display.rotation,
            "codec": self.display.codec,
            "transport": self.transport,
            "last_error": self.last_error,
        }

    def _scrub(self, text: str) -> str:
        """FFmpeg's messages quote the URL, password included (as given, or as handed to
        FFmpeg with its scheme in lower case)."""
        for url in (self.config.url, self.spec.url):
            text = text.replace(url, redact_url(url))
        return text

    def _set_state(self, state: StreamState, error: str | None = None) -> None:
        if error is not None:
            error = self._scrub(error)
            self.last_error = error
        if state is self.state:
            return
        self.state = state
        log.info(
            "stream state",
            extra={"fields": {"stream": self.id, "state": str(state), "error": error}},
        )
        self._on_state(self)

    def _count_decode_error(self) -> None:
        self.decode_errors += 1

    def _frames(self) -> Iterator[Any]:
        spec, cfg = self.spec, self.config
        if spec.scheme == "synthetic":
            self.transport = "synthetic"
            self.display.codec = "rawvideo"
            return synthetic_frames(spec, self._stop)
        if spec.scheme == "whip":
            if self._inbox is None:
                raise RuntimeError("whip:// stream without an inbox")
            self.transport = "webrtc"
            return self._inbox.frames(self._stop, cfg.stall_timeout_s)
        # Each input is read through its own protocol only: nothing it contains (a playlist,
        # a redirect) can make FFmpeg open another kind of input.
        if spec.scheme == "file":
            self.transport = "file"
            return self._ffmpeg({"protocol_whitelist": "file"}, pace=True, loop=cfg.loop)
        if spec.scheme == "tcp":
            self.transport = "tcp"
            options = {**self._live_options(), "protocol_whitelist": "tcp"}
            return self._listen_frames(options) if cfg.listen else self._ffmpeg(options)
        if spec.scheme in ("http", "https"):
            self.transport = spec.scheme
            options = {**self._live_options(), **HTTP_OPTIONS}
            return self._ffmpeg(options, allow=frozenset({"hls"}))
        return self._rtsp_frames()

    def _ffmpeg(
        self,
        options: dict[str, str],
        pace: bool = False,
        loop: bool = False,
        open_timeout: float | None = None,
        allow: frozenset[str] = frozenset(),
    ) -> Iterator[Any]:
        cfg = self.config
        return pyav_frames(
            self.spec.url,
            options=options,
            open_timeout=open_timeout or cfg.open_timeout_s,
            stall_timeout=cfg.stall_timeout_s,
            threads=cfg.decode_threads,
            stop=self._stop,
            on_decode_error=self._count_decode_error,
            pace=pace,
            loop=loop,
            display=self.display,
            allow=allow,
            on_packet=self.on_packet,
        )

    def _live_options(self) -> dict[str, str]:
        return dict(FAST_START) if self.config.fast_start else {}

    def _listen_frames(self, options: dict[str, str]) -> Iterator[Any]:
        """Waits for the camera to connect, in windows of ``open_timeout_s`` so that ``stop()``
        is heard between them. A window nobody connected in is no failure: the port opens
        again at once, without back-off, so a camera retrying finds it open."""
        window = self.config.open_timeout_s
        options = {**options, "listen": "1", "listen_timeout": str(max(1, int(window * 1000)))}
        while not self._stop.is_set():
            opened = time.monotonic()
            # The open covers the wait plus probing what the camera sends once connected.
            frames = self._ffmpeg(options, open_timeout=2 * window)
            try:
                first = next(frames)
            except StopIteration:
                return
            except av.error.TimeoutError:
                if time.monotonic() - opened < window / 2:
                    raise  # not the listen window running out
                continue
            yield first
            yield from frames
            return

    def _rtsp_frames(self) -> Iterator[Any]:
        transports = ["tcp", "udp"] if self.config.transport == "auto" else [self.config.transport]
        for i, transport in enumerate(transports):
            self.transport = transport
            frames = self._ffmpeg({**self._live_options(), "rtsp_transport": transport})
            try:
                first = next(frames)
            except StopIteration:
                return
            except (av.error.FFmpegError, OSError, StallError) as exc:
                if i + 1 == len(transports) or isinstance(exc, ANSWERS):
                    raise
                log.info(
                    "rtsp transport failed, trying the next",
                    extra={
                        "fields": {
                            "stream": self.id,
                            "transport": transport,
                            "error": self._scrub(str(exc)),
                        }
                    },
                )
                continue
            yield first
            yield from frames
            return

    def _run(self) -> None:
        failures = 0
        self._set_state(StreamState.CONNECTING)
        while not self._stop.is_set():
            try:
                for source in self._frames():
                    self._publish(source)
                    failures = 0
                if self.spec.scheme == "file" and not self.config.loop and not self._stop.is_set():
                    self._set_state(StreamState.STOPPED, "end of file")
                    return
                if self.spec.scheme == "whip" and not self._stop.is_set():
                    # The publisher left: stopped until the next one publishes (no back-off).
                    self._set_state(StreamState.STOPPED, "publisher ended")
                    failures = 0
                    continue
                error = "stream ended"
            except RefusedInputError as exc:
                self._set_state(StreamState.FAILED, str(exc))
                return
            except Exception as exc:  # any failure of the peer or the bytes means: reconnect
                error = describe(exc, credentials=urlsplit(self.config.url).username is not None)
            if self._stop.is_set():
                break
            failures += 1
            limit = self.config.reconnect.max_attempts
            if limit is not None and failures >= limit:
                self._set_state(StreamState.FAILED, f"{error} (gave up after {failures} attempts)")
                return
            self.reconnects += 1
            self._set_state(StreamState.RECONNECTING, error)
            rc = self.config.reconnect
            self._stop.wait(backoff_delay(failures, rc.initial_s, rc.max_s, rc.jitter))
        self._set_state(StreamState.STOPPED)

    def _publish(self, source: Any) -> None:
        now = time.time()
        self.frames_in += 1
        trusted = self._clock.trusted
        shot = self._clock.unix(now, pts_time(source))
        if trusted and not self._clock.trusted:
            log.warning(
                "camera timestamps do not run in real time: frames are timed by arrival",
                extra={"fields": {"stream": self.id}},
            )
        elif self._clock.trusted and not trusted:
            log.info("camera timestamps run true again", extra={"fields": {"stream": self.id}})
        frame = Frame(self.id, self.frames_in, now, source, capture_ts=shot)
        fmt = (frame.width, frame.height, self.display.codec)
        if fmt != self._format:
            if self._format is not None:
                self.format_changes += 1
                log.info(
                    "stream format changed",
                    extra={"fields": {"stream": self.id, "was": self._format, "now": fmt}},
                )
            self._format = fmt
        self.width, self.height = frame.width, frame.height
        self.last_frame_at = now
        self._recent.append(time.monotonic())
        if self.state is not StreamState.LIVE:
            self._set_state(StreamState.LIVE)
        self._on_frame(frame)


def pts_time(source: Any) -> float | None:
    """Presentation time in seconds of a decoded picture, when its source has a clock."""
    time_s = getattr(source, "time", None)
    return float(time_s) if time_s is not None else None
