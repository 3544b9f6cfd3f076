"""Shared vocabulary of vlm-monitor: frames, stream states and events. No I/O here."""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import cv2
import numpy as np

from vlm_monitor.geometry import Size, analysis_size, fit_budget
from vlm_monitor.pixels import to_bgr

# The vocabulary of events (incidents): what deserves a person's attention.
Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")
ATTENTION_KINDS = ("absent", "multiple_faces", "looking_away")
EVENT_KINDS = ("motion", "alert", *ATTENTION_KINDS, "stream_offline", "stream_online")

T = TypeVar("T")

DEFAULT_JPEG_QUALITY = 80


class StreamState(enum.StrEnum):
    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"
    FAILED = "failed"


class Frame:
    """One decoded picture, shared read-only by every consumer of a stream.

    The picture stays in the decoder's own format (an ``av.VideoFrame``, usually YUV) until a
    consumer asks for BGR at some size or for JPEG; each conversion is done at most once per
    frame and size (``pixels.to_bgr``), and cached. Conversions are thread-safe and return
    read-only arrays: consumers must copy before they draw.

    ``width``/``height`` are the displayed shape (sources turn rotated pictures upright at
    decode). ``source_size`` is the displayed size of the camera's picture this frame was
    scaled from: the frame's own size, except for copies received at an analysis size.
    """

    __slots__ = (
        "_bgr", "_lock", "_memo", "_source", "capture_ts", "height", "seq", "source_size",
        "stream_id", "ts", "width",
    )  # fmt: skip

    def __init__(
        self,
        stream_id: str,
        seq: int,
        ts: float,
        source: Any,
        source_size: Size | None = None,
        capture_ts: float | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.seq = seq  # per-stream counter, starting at 1
        self.ts = ts  # unix seconds when the frame left the decoder: ages, latencies
        # Unix seconds when it was shot, on the stream's media clock (``media_clock``): the
        # time line for rates, heart rate and hold times, steady however late decoding ran.
        self.capture_ts = ts if capture_ts is None else capture_ts
        self._source = source  # av.VideoFrame, or an HxWx3 uint8 BGR ndarray
        if isinstance(source, np.ndarray):
            self.height, self.width = int(source.shape[0]), int(source.shape[1])
            source.setflags(write=False)
        else:
            self.width, self.height = int(source.width), int(source.height)
        self.source_size: Size = source_size or (self.width, self.height)
        self._bgr: dict[Size, np.ndarray] = {}
        self._memo: dict[Hashable, Any] = {}
        self._lock = threading.Lock()

    @property
    def size(self) -> Size:
        return (self.width, self.height)

    def fit(self, budget: Size | None) -> Size:
        """The size to analyse this frame at for a pixel budget (its aspect ratio, never
        upscaled; see ``geometry.fit_budget``); None = native. Ask ``bgr`` for this size, so
        consumers with the same budget share one conversion."""
        return self.size if budget is None else fit_budget(self.width, self.height, *budget)

    def bgr_fit(self, budget: Size | None) -> np.ndarray:
        """BGR24 pixels within a pixel budget (see ``fit``). Blocking: call from a thread."""
        return self.bgr(self.fit(budget))

    def analysis_bgr(self, budget: Size | None) -> np.ndarray:
        """BGR24 pixels for the analyzers, within a stream's ``analysis_size`` budget (see
        ``geometry.analysis_size``). Blocking: call from a thread."""
        return self.bgr(analysis_size(self.width, self.height, budget))

    def bgr(self, size: Size | None = None) -> np.ndarray:
        """BGR24 pixels at ``size`` (default: native). Blocking: call from a thread."""
        want = size or self.size
        cached = self._bgr.get(want)
        if cached is not None:
            return cached
        with self._lock:
            cached = self._bgr.get(want)
            if cached is None:
                cached = self._convert(want)
                cached.setflags(write=False)
                self._bgr[want] = cached
            return cached

    def _convert(self, size: Size) -> np.ndarray:
        src = self._source
        if isinstance(src, np.ndarray):
            if size == self.size:
                return src
            return cv2.resize(src, size, interpolation=cv2.INTER_AREA)
        return to_bgr(src, size)

    def memo(self, key: Hashable, make: Callable[[], T]) -> T:
        """``make()`` computed once per frame and key, whoever asks first; thread-safe.
        ``make`` must not call ``memo`` or ``bgr`` itself (the frame lock is held)."""
        if key in self._memo:
            return self._memo[key]  # type: ignore[no-any-return]
        with self._lock:
            if key not in self._memo:
                self._memo[key] = make()
            return self._memo[key]  # type: ignore[no-any-return]

    def has_memo(self, key: Hashable) -> bool:
        return key in self._memo

    def jpeg(self, quality: int = DEFAULT_JPEG_QUALITY, width: int | None = None) -> bytes:
        """JPEG of the frame, encoded once per quality and width, whoever asks first.
        ``width``: scaled down to that many pixels wide, aspect kept (None, or a width at
        least the frame's, is native size). Blocking: call from a thread."""
        size = self.thumbnail_size(width)
        key: Hashable = ("jpeg", quality) if size == self.size else ("jpeg", quality, size)
        if key in self._memo:
            return self._memo[key]  # type: ignore[no-any-return]
        pixels = self.bgr(size)

        def encode() -> bytes:
            ok, buf = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise RuntimeError(f"JPEG encoding failed for {self.stream_id}#{self.seq}")
            return buf.tobytes()

        return self.memo(key, encode)

    def has_jpeg(self, quality: int = DEFAULT_JPEG_QUALITY, width: int | None = None) -> bool:
        size = self.thumbnail_size(width)
        return (("jpeg", quality) if size == self.size else ("jpeg", quality, size)) in self._memo

    def thumbnail_size(self, width: int | None) -> Size:
        """The size of a view ``width`` pixels wide with the frame's aspect ratio, never
        upscaled; the height at least 1 pixel."""
        if width is None or width >= self.width:
            return self.size
        return (width, max(1, round(self.height * width / self.width)))

    def age(self, now: float | None = None) -> float:
        return (now if now is not None else time.time()) - self.ts

    def __repr__(self) -> str:
        return f"Frame({self.stream_id!r}, seq={self.seq}, {self.width}x{self.height})"


@dataclass(slots=True)
class Event:
    """A push event for /ws/events and friends: ``{"type", "stream", "ts", ...data}``."""

    type: str
    stream: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "stream": self.stream, "ts": self.ts, **self.data}


@dataclass(frozen=True, slots=True)
class AnalysisResult:
    """One analyzer's reading of one frame, stamped with the frame it came from.

    ``origin`` says where it was computed (``local``: this server's analyzers; ``worker``: an
    out-of-process worker, over Redis or HTTP); it is counted, never sent."""

    stream: str
    analyzer: str
    frame_seq: int
    video_timestamp: float  # unix seconds when the analysed frame left the decoder
    latency_s: float  # frame decoded -> result ready
    result: dict[str, Any]
    session_id: str | None = None
    origin: str = "local"

    def to_json(self) -> dict[str, Any]:
        return {
            "analyzer": self.analyzer,
            "session_id": self.session_id,
            "frame_seq": self.frame_seq,
            "video_timestamp": self.video_timestamp,
            "latency_s": round(self.latency_s, 4),
            "result": self.result,
        }


class DomainError(Exception):
    """What a request asked for cannot be done, said for the person who asked (the message
    is the HTTP answer's ``error``). Each kind below is one HTTP status, mapped in one place
    (``app.py``), so the domain never speaks HTTP and routers never translate by hand."""

    # The message, never its repr, even for subclasses that are also KeyErrors.
    __str__ = Exception.__str__


class NotFoundError(DomainError):
    """No such stream, flow, ...: 404."""


class ConflictError(DomainError):
    """It exists already, or is in a state that forbids the change: 409."""


class InvalidError(DomainError):
    """The request names something that cannot work (a URL, a provider, an analyzer that
    cannot start): 422. ``problems``: every problem, when there are several."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class LimitError(DomainError):
    """A configured limit (streams, flows, ...) is reached: 429."""


class CapacityError(DomainError):
    """This machine cannot take the work without breaking what already runs: 503."""
