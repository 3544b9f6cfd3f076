"""The pipeline's records: FrameData -> VideoInfo -> ResultData (the original design's fields,
plus a few more).

They are dataclasses, and they also read like the dicts the original design passed around,
so plug-ins written against that shape (``f['relative_timestamp']``, ``info.get('clip_id')``)
keep working.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {}


def _field_names(cls: type[Any]) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


class RecordView:
    """Read-only mapping view over a dataclass's fields; unknown keys raise KeyError.

    Not registered as a ``Mapping``: serialisers that special-case mappings must keep
    treating the records as dataclasses."""

    __slots__ = ()

    def keys(self) -> tuple[str, ...]:
        return _field_names(type(self))

    def values(self) -> list[Any]:
        return [getattr(self, k) for k in self.keys()]

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self.keys()]

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.keys() else default

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())


@dataclass(slots=True)
class FrameData(RecordView):
    frame: np.ndarray  # BGR, read-only, shared with other consumers: copy before drawing
    timestamp: float  # unix seconds (presentation time of the frame at the backend)
    relative_timestamp: float  # seconds since the processor's first frame
    frame_number: int  # the stream's frame sequence number
    boxes: list[list[float]] = field(default_factory=list)  # analyzers' [x, y, w, h] in 0..1


@dataclass(slots=True)
class VideoInfo(RecordView):
    video_path: str
    frame_count: int
    created_at: float
    start_relative_timestamp: float
    end_relative_timestamp: float
    original_frame_range: list[int]  # [first, last] frame_number of the buffered span
    sampling_info: dict[str, Any]
    stream: str = ""
    clip_id: str = ""
    start_timestamp: float = 0.0  # unix seconds of the first and last sampled frames
    end_timestamp: float = 0.0
    build_s: float = 0.0  # time spent sampling + encoding, seconds
    motion: float = 0.0  # mean absolute change between sampled frames, 0..255
    frames: list[FrameData] = field(default_factory=list, repr=False)  # sampled, for providers

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("frames")
        return doc


@dataclass(slots=True)
class ResultData(RecordView):
    result: str
    video_path: str
    video_info: VideoInfo
    inference_start_time: float
    inference_end_time: float
    inference_duration: float
    inference_start_timestamp: str
    inference_end_timestamp: str
    error: str | None = None
    stream: str = ""
    provider: str | None = None
    model: str | None = None
    structured: dict[str, Any] | None = None  # what a post-processor parsed out of `result`
    tokens: int = 0
    lag_s: float = 0.0  # clip end -> inference start, seconds
    id: int | None = None  # row id once stored

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "stream": self.stream,
            "result": self.result,
            "error": self.error,
            "structured": self.structured,
            "provider": self.provider,
            "model": self.model,
            "tokens": self.tokens,
            "lag_s": round(self.lag_s, 3),
            "video_path": self.video_path,
            "video_info": self.video_info.to_json(),
            "inference_start_time": self.inference_start_time,
            "inference_end_time": self.inference_end_time,
            "inference_duration": round(self.inference_duration, 4),
            "inference_start_timestamp": self.inference_start_timestamp,
            "inference_end_timestamp": self.inference_end_timestamp,
        }


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1000):03d}"
