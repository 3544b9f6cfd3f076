"""The AsyncVideoProcessor, made correct: frames -> sampled MP4 clips -> VLM -> results.

Queues and what they do when full:
  frame queue   100 frames  the NEW frame is dropped (``frames_dropped``)
  video queue   ``max_in_flight`` clips  the writer blocks (back-pressure; the frame queue then
                drops); a worker drops clips older than ``deadline_s`` as stale, and with
                ``latest_wins`` takes the newest clip and drops the older ones
  result queue  20 results  the OLDEST result is overwritten (``results_overwritten``)

``stop()`` rule: the partial clip being buffered and clips not yet handed to a provider are
discarded (their files deleted); calls already running finish (bounded by the provider
timeout) and their results are delivered. No thread and no partial file is left behind.

Whatever a plug-in (sampling strategy, result post-processor, provider call) raises fails
that one clip: its result carries ``"<plug-in> raised <Type>: <message>"``, the traceback is
logged, ``plugin_errors`` (and ``plugin_errors_by_stage``) count it. ProviderError/ValueError
from a provider or post-processor stay expected outcomes (``inference_errors``, no traceback).
A thread ended anyway is restarted by the watchdog in ``add_frame`` (``thread_restarts``).
"""

from __future__ import annotations

import collections
import logging
import queue
import string
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from vlm_monitor.clips.clipqueue import ClipQueue
from vlm_monitor.clips.clock import MediaClock
from vlm_monitor.clips.sampling import STRATEGIES, SamplingStrategy, change_scores
from vlm_monitor.clips.store import ClipStore, DiskFullError
from vlm_monitor.clips.types import FrameData, ResultData, VideoInfo, iso
from vlm_monitor.clips.workers import WorkerThreads
from vlm_monitor.config import ClipsConfig
from vlm_monitor.stats import percentile
from vlm_monitor.vlm.base import ProviderError, VlmAnswer, VlmRequest
from vlm_monitor.vlm.postprocess import JsonSchemaProcessor, ResultPostProcessor

log = logging.getLogger("vlm_monitor.clips")

FRAME_QUEUE_SIZE = 100
RESULT_QUEUE_SIZE = 20
STAT_KEYS = (
    "frames_received",
    "frames_dropped",
    "videos_created",
    "clips_gated",
    "clips_skipped_disk",
    "clip_write_errors",
    "clips_dropped_stale",
    "clips_dropped_stopped",
    "inferences_completed",
    "inference_errors",
    "tokens",
    "results_overwritten",
    "plugin_errors",
)
PLUGIN_STAGES = ("sampling", "postprocess", "provider")
MAX_ERROR_CHARS = 2000  # a plug-in's message may quote whole records; results stay small
Analyze = Callable[[VlmRequest], tuple[str, VlmAnswer]]


class AsyncVideoProcessor:
    """``add_frame`` is non-blocking and thread-safe; ``get_result`` may be called from any
    thread; ``on_result`` (optional) is called from a pipeline thread for every result (the
    writer's, for a clip whose sampling failed)."""

    def __init__(
        self,
        stream: str,
        config: ClipsConfig,
        store: ClipStore,
        analyze: Analyze | None,
        on_result: Callable[[ResultData], None] | None = None,
    ) -> None:
        self.stream, self.config, self.store = stream, config, store
        self._analyze = analyze
        self._on_result = on_result
        self.frame_queue: queue.Queue[FrameData] = queue.Queue(FRAME_QUEUE_SIZE)
        self.video_queue = ClipQueue(config.max_in_flight, config.deadline_s, config.stale_policy)
        self.result_queue: collections.deque[ResultData] = collections.deque(
            maxlen=RESULT_QUEUE_SIZE
        )
        self._result_cond = threading.Condition()
        self.frame_buffer: list[FrameData] = []
        self.stop_event = threading.Event()
        self._strategy: SamplingStrategy = STRATEGIES[config.sampling]()
        self._post: ResultPostProcessor | None = (
            JsonSchemaProcessor(config.schema_) if config.schema_ else None
        )
        self._clock = MediaClock()
        self._workers = WorkerThreads(self.stop_event)
        self.paused_reason: str | None = None
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        self.plugin_errors_by_stage: dict[str, int] = dict.fromkeys(PLUGIN_STAGES, 0)
        self._build_times: collections.deque[float] = collections.deque(maxlen=200)
        self._last_lag = 0.0

    # ---------------------------------------------------------------- public API (the original's)

    def start(self) -> None:
        targets = {f"clips-writer-{self.stream}": self._video_writer_worker}
        for i in range(self.config.concurrency):
            targets[f"clips-vlm-{self.stream}-{i}"] = self._inference_worker
        self._workers.start(targets)

    def stop(self, timeout: float = 30.0) -> None:
        busy = self._workers.stop(timeout)
        for info in self.video_queue.drain():
            self._discard(info, "stopped")
        self.frame_buffer.clear()
        if busy:
            log.warning(
                "VLM call still running after stop; it finishes on its own thread",
                extra={"fields": {"stream": self.stream, "threads": busy}},
            )

    def add_frame(
        self, frame: np.ndarray, timestamp: float, frame_number: int, pts: float | None = None
    ) -> bool:
        """Queue a frame; False (and counted) when the frame queue is full.

        ``pts`` (the source's presentation time, seconds) places the frame on the media
        clock, so frames that arrive in a burst still sample by when they were shot; without
        it, or when it jumps (reconnect, loop), the arrival time ``timestamp`` is used."""
        self._workers.check()
        data = FrameData(frame, timestamp, self._clock.relative(timestamp, pts), frame_number)
        try:
            self.frame_queue.put_nowait(data)
        except queue.Full:
            self.stats["frames_dropped"] += 1
            return False
        self.stats["frames_received"] += 1
        return True

    def get_result(self, timeout: float | None = None) -> ResultData | None:
        with self._result_cond:
            self._result_cond.wait_for(lambda: bool(self.result_queue), timeout)
            return self.result_queue.popleft() if self.result_queue else None

    def set_sampling_strategy(self, strategy: SamplingStrategy) -> None:
        self._strategy = strategy

    def set_result_processor(self, processor: ResultPostProcessor | None) -> None:
        self._post = processor

    def get_statistics(self) -> dict[str, Any]:
        return {
            **self.stats,
            "sampling": self._strategy_name(),
            "clip_build_p50_s": percentile(self._build_times, 50),
            "clip_build_p99_s": percentile(self._build_times, 99),
            "lag_s": round(self._last_lag, 3),
            "paused_reason": self.paused_reason,
            "plugin_errors_by_stage": dict(self.plugin_errors_by_stage),
            "thread_restarts": self._workers.restarts,
            "threads_alive": self._workers.alive(),
        }

    def dump_state(self) -> dict[str, Any]:
        return {
            "frame_queue_size": self.frame_queue.qsize(),
            "video_queue_size": self.video_queue.qsize(),
            "result_queue_size": len(self.result_queue),
            "frame_buffer_size": len(self.frame_buffer),
            "threads_alive": self._workers.alive(),
            "stop_event_set": self.stop_event.is_set(),
            "statistics": self.get_statistics(),
        }

    # ---------------------------------------------------------------- threads

    def _video_writer_worker(self) -> None:
        while not self.stop_event.is_set():
            try:
                data = self.frame_queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self.frame_buffer.append(data)
            span = data.relative_timestamp - self.frame_buffer[0].relative_timestamp
            if span < self.config.clip_seconds:
                continue
            buffered = self.frame_buffer
            keep_from = data.relative_timestamp - self.config.overlap_s
            self.frame_buffer = (
                [f for f in buffered if f.relative_timestamp >= keep_from]
                if self.config.overlap_s
                else []
            )
            info = self._build_clip(buffered)
            if info is not None and not self.video_queue.put(info, self.stop_event):
                self._discard(info, "stopped")

    def _build_clip(self, buffered: list[FrameData]) -> VideoInfo | None:
        started = time.perf_counter()
        try:
            sampled = list(self._strategy.sample_frames(buffered, self.config.frames_per_clip))
            if not all(isinstance(f, FrameData) for f in sampled):
                raise TypeError("sample_frames must return FrameData records from its input")
        except Exception as exc:
            what = f"sampling strategy {self._strategy_name()!r}"
            self._deliver(self._failed_clip(buffered, self._plugin_failed("sampling", what, exc)))
            return None
        if not sampled:
            return None
        scores = change_scores(sampled)[1:]
        motion = float(np.mean(scores)) if scores else 0.0
        if self.config.min_motion is not None and motion < self.config.min_motion:
            self.stats["clips_gated"] += 1
            return None
        span = sampled[-1].relative_timestamp - sampled[0].relative_timestamp
        fps = (len(sampled) - 1) / span if span > 0 and len(sampled) > 1 else 1.0
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
        build_s = time.perf_counter() - started
        self._build_times.append(build_s)
        self.stats["videos_created"] += 1
        return VideoInfo(
            video_path=str(path),
            frame_count=len(sampled),
            created_at=time.time(),
            start_relative_timestamp=sampled[0].relative_timestamp,
            end_relative_timestamp=sampled[-1].relative_timestamp,
            original_frame_range=[buffered[0].frame_number, buffered[-1].frame_number],
            sampling_info={
                "strategy": self._strategy_name(),
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

    def _inference_worker(self) -> None:
        while not self.stop_event.is_set():
            info, stale = self.video_queue.get(timeout=0.2)
            for old in stale:
                self._discard(old, "stale")
            if info is None:
                continue
            self._deliver(self._infer(info))

    def _infer(self, info: VideoInfo) -> ResultData:
        start = time.time()
        self._last_lag = start - info.end_timestamp
        provider = model = None
        text, error, structured, tokens = "", None, None, 0
        prompt = string.Template(self.config.prompt).safe_substitute(
            stream=self.stream,
            start=iso(info.start_timestamp),
            end=iso(info.end_timestamp),
            frames=info.frame_count,
            motion=f"{info.motion:.1f}",
        )
        request = VlmRequest(
            self.stream,
            prompt,
            [f.frame for f in info.frames],
            [f.timestamp for f in info.frames],
            info.video_path,
            info.motion,
            self.config.schema_,
        )
        stage, what = "provider", "VLM provider call"
        try:
            if self._analyze is None:
                raise ProviderError("no VLM provider configured for this stream")
            provider, answer = self._analyze(request)
            text, model, tokens, structured = (
                answer.text,
                answer.model,
                answer.tokens,
                answer.structured,
            )
            if self._post is not None:
                stage, what = "postprocess", f"result processor {type(self._post).__name__}"
                structured = self._post.process_result(text)
        except (ProviderError, ValueError) as exc:
            error = str(exc)
        except Exception as exc:
            error = self._plugin_failed(stage, what, exc)
        if error is not None:
            self.stats["inference_errors"] += 1
        self.stats["inferences_completed"] += 1
        self.stats["tokens"] += tokens
        end = time.time()
        info.frames = []  # the pixels are not needed any more
        return ResultData(
            result=text,
            video_path=info.video_path,
            video_info=info,
            inference_start_time=start,
            inference_end_time=end,
            inference_duration=end - start,
            inference_start_timestamp=iso(start),
            inference_end_timestamp=iso(end),
            error=error,
            stream=self.stream,
            provider=provider,
            model=model,
            structured=structured,
            tokens=tokens,
            lag_s=start - info.end_timestamp,
        )

    def _strategy_name(self) -> str:
        return str(getattr(self._strategy, "name", "custom"))

    def _plugin_failed(self, stage: str, what: str, exc: Exception) -> str:
        """Counts and logs (with the traceback) a plug-in's exception; the clip's error text."""
        self.stats["plugin_errors"] += 1
        self.plugin_errors_by_stage[stage] += 1
        error = f"{what} raised {type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        log.error(
            "clip plug-in failed; the clip is marked failed",
            exc_info=exc,
            extra={"fields": {"stream": self.stream, "stage": stage, "error": error}},
        )
        return error

    def _failed_clip(self, buffered: list[FrameData], error: str) -> ResultData:
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
                "strategy": self._strategy_name(),
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

    def _deliver(self, result: ResultData) -> None:
        with self._result_cond:
            if len(self.result_queue) == self.result_queue.maxlen:
                self.stats["results_overwritten"] += 1
            self.result_queue.append(result)
            self._result_cond.notify_all()
        if self._on_result is not None:
            try:
                self._on_result(result)
            except Exception:
                log.exception("result handler failed", extra={"fields": {"stream": self.stream}})

    def _discard(self, info: VideoInfo, why: str) -> None:
        self.stats[f"clips_dropped_{why}"] += 1
        info.frames = []
        path = self.store.path_of(info.clip_id)
        if path is not None:
            path.unlink(missing_ok=True)
