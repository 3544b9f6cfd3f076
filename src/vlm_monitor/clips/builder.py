"""From buffered frames to a written clip: sampling, the gates that keep a clip from the
VLM, and the MP4 file. Runs on the processor's writer thread."""

from __future__ import annotations

import collections
import logging
import time
import uuid

import numpy as np

from vlm_monitor.clips.dedupe import DuplicateFilter
from vlm_monitor.clips.sampling import STRATEGIES, SamplingStrategy, change_scores
from vlm_monitor.clips.store import ClipStore, DiskFullError
from vlm_monitor.clips.types import FrameData, ResultData, VideoInfo, iso
from vlm_monitor.config import ClipsConfig

log = logging.getLogger("vlm_monitor.clips")


class SamplingFailed(Exception):
    """The sampling plug-in raised (the cause): that clip fails, the stream goes on."""


class ClipBuilder:
    def __init__(
        self, stream: str, config: ClipsConfig, store: ClipStore, stats: dict[str, int]
    ) -> None:
        self.stream, self.config, self.store = stream, config, store
        self.stats = stats  # the processor's counters, shared
        self.strategy: SamplingStrategy = STRATEGIES[config.sampling]()
        self.paused_reason: str | None = None
        self.build_times: collections.deque[float] = collections.deque(maxlen=200)
        dedupe = config.dedupe
        self._dedupe = (
            DuplicateFilter(dedupe.threshold, dedupe.max_skip_s) if dedupe.enabled else None
        )

    def not_analysed(self) -> None:
        """The last clip built got no VLM call after all (budget): see DuplicateFilter.forget."""
        if self._dedupe is not None:
            self._dedupe.forget()

    def strategy_name(self) -> str:
        return str(getattr(self.strategy, "name", "custom"))

    def build(self, buffered: list[FrameData]) -> VideoInfo | None:
        """The clip, or None when it is gated or cannot be written (counted). Raises
        SamplingFailed."""
        started = time.perf_counter()
        try:
            sampled = list(self.strategy.sample_frames(buffered, self.config.frames_per_clip))
            if not all(isinstance(f, FrameData) for f in sampled):
                raise TypeError("sample_frames must return FrameData records from its input")
        except Exception as exc:
            raise SamplingFailed(f"sampling strategy {self.strategy_name()!r}") from exc
        if not sampled:
            return None
        scores = change_scores(sampled)[1:]
        motion = float(np.mean(scores)) if scores else 0.0
        if self.config.min_motion is not None and motion < self.config.min_motion:
            self.stats["clips_gated"] += 1
            return None
        # Before the MP4 is written: a skipped clip costs neither a call nor disk.
        if self._dedupe is not None and self._dedupe.is_duplicate(sampled):
            self.stats["clips_skipped_duplicate"] += 1
            return None
        span = sampled[-1].relative_timestamp - sampled[0].relative_timestamp
        fps = (len(sampled) - 1) / span if span > 0 and len(sampled) > 1 else 1.0
        written = self._write(sampled, fps)
        if written is None:
            return None
        clip_id, path = written
        build_s = time.perf_counter() - started
        self.build_times.append(build_s)
        self.stats["videos_created"] += 1
        return VideoInfo(
            video_path=path,
            frame_count=len(sampled),
            created_at=time.time(),
            start_relative_timestamp=sampled[0].relative_timestamp,
            end_relative_timestamp=sampled[-1].relative_timestamp,
            original_frame_range=[buffered[0].frame_number, buffered[-1].frame_number],
            sampling_info={
                "strategy": self.strategy_name(),
                "buffered": len(buffered),
                "sampled": len(sampled),
                "target": self.config.frames_per_clip,
                "fps": round(fps, 4),
                "frame_numbers": [f.frame_number for f in sampled],
            },
            stream=self.stream,
            clip_id=clip_id,
            start_timestamp=sampled[0].timestamp,
            end_timestamp=buffered[-1].timestamp,
            build_s=build_s,
            motion=motion,
            frames=sampled,
        )

    def _write(self, sampled: list[FrameData], fps: float) -> tuple[str, str] | None:
        try:
            clip_id, path = self.store.write(sampled, fps)
        except DiskFullError as exc:
            self.stats["clips_skipped_disk"] += 1
            if self.paused_reason is None:
                log.error(
                    "clip writing paused",
                    extra={"fields": {"stream": self.stream, "reason": str(exc)}},
                )
            self.paused_reason = str(exc)
            return None
        except (OSError, ValueError) as exc:
            self.stats["clip_write_errors"] += 1
            log.error(
                "clip write failed", extra={"fields": {"stream": self.stream, "error": str(exc)}}
            )
            return None
        if self.paused_reason is not None:
            log.info("clip writing resumed", extra={"fields": {"stream": self.stream}})
            self.paused_reason = None
        return clip_id, str(path)

    def failed_clip(self, buffered: list[FrameData], error: str) -> ResultData:
        """The result of a clip that never got a file: it is reported like any other."""
        now = time.time()
        first, last = buffered[0], buffered[-1]
        info = VideoInfo(
            video_path="",
            frame_count=0,
            created_at=now,
            start_relative_timestamp=first.relative_timestamp,
            end_relative_timestamp=last.relative_timestamp,
            original_frame_range=[first.frame_number, last.frame_number],
            sampling_info={
                "strategy": self.strategy_name(),
                "buffered": len(buffered),
                "sampled": 0,
                "target": self.config.frames_per_clip,
            },
            stream=self.stream,
            # Shaped like a written clip's id: results posted by a clip worker need one.
            clip_id=f"{int(now * 1000)}-{uuid.uuid4().hex[:8]}",
            start_timestamp=first.timestamp,
            end_timestamp=last.timestamp,
        )
        stamp = iso(now)
        return ResultData("", "", info, now, now, 0.0, stamp, stamp, error, self.stream)
