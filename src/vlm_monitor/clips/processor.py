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
from collections.abc import Callable
from typing import Any

import numpy as np

from vlm_monitor.clips.builder import ClipBuilder, SamplingFailed
from vlm_monitor.clips.clipqueue import ClipQueue
from vlm_monitor.clips.sampling import SamplingStrategy
from vlm_monitor.clips.store import ClipStore
from vlm_monitor.clips.types import FrameData, ResultData, VideoInfo, iso
from vlm_monitor.clips.workers import WorkerThreads
from vlm_monitor.config import ClipsConfig
from vlm_monitor.media_clock import MediaClock
from vlm_monitor.stats import percentile
from vlm_monitor.vlm.base import (
    BudgetSpent,
    ProviderError,
    StructuredAnswerError,
    VlmAnswer,
    VlmRequest,
)
from vlm_monitor.vlm.postprocess import ResultPostProcessor
from vlm_monitor.vlm.schemas import resolve_schema

log = logging.getLogger("vlm_monitor.clips")

FRAME_QUEUE_SIZE = 100
RESULT_QUEUE_SIZE = 20
STAT_KEYS = (
    "frames_received",
    "frames_dropped",
    "videos_created",
    "clips_gated",
    "clips_skipped_duplicate",
    "clips_skipped_disk",
    "clips_skipped_budget",
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
        reference: np.ndarray | None = None,
    ) -> None:
        """``reference``: the stream's picture of the empty scene, sent before each clip."""
        self.stream, self.config, self.store = stream, config, store
        self.reference = reference
        self.frame_size: tuple[int, int] | None = None  # (width, height) of the last frame
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
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        self._builder = ClipBuilder(stream, config, store, self.stats)
        # The provider validates answers against the schema (with a repair retry); a
        # post-processor set here is for custom parsing on top.
        self._post: ResultPostProcessor | None = None
        self._schema = resolve_schema(config.schema_)
        self._clock = MediaClock()
        self._workers = WorkerThreads(self.stop_event)
        self.plugin_errors_by_stage: dict[str, int] = dict.fromkeys(PLUGIN_STAGES, 0)
        self._last_lag = 0.0
        self._budget_skip: str | None = None  # why the last clip got no call, while it lasts

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
        self,
        frame: np.ndarray,
        timestamp: float,
        frame_number: int,
        pts: float | None = None,
        boxes: list[list[float]] | None = None,
    ) -> bool:
        """Queue a frame; False (and counted) when the frame queue is full.

        ``pts`` (the source's presentation time, seconds) places the frame on the media
        clock, so frames that arrive in a burst still sample by when they were shot; without
        it, or when it jumps (reconnect, loop), the arrival time ``timestamp`` is used.
        ``boxes``: what the analyzers saw around this frame ([x, y, w, h] in 0..1), drawn on
        it when ``annotate`` is set."""
        self._workers.check()
        self.frame_size = (frame.shape[1], frame.shape[0])
        relative = self._clock.relative(timestamp, pts)
        data = FrameData(frame, timestamp, relative, frame_number, boxes or [])
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
        self._builder.strategy = strategy

    def set_result_processor(self, processor: ResultPostProcessor | None) -> None:
        self._post = processor

    def get_statistics(self) -> dict[str, Any]:
        return {
            **self.stats,
            "sampling": self._strategy_name(),
            "clip_build_p50_s": percentile(self._builder.build_times, 50),
            "clip_build_p99_s": percentile(self._builder.build_times, 99),
            "lag_s": round(self._last_lag, 3),
            "paused_reason": self.paused_reason,
            "plugin_errors_by_stage": dict(self.plugin_errors_by_stage),
            # Clips that got no VLM call, by why: vlm_clips_skipped_total{reason} in /metrics.
            "skipped": {
                "duplicate": self.stats["clips_skipped_duplicate"],
                "still": self.stats["clips_gated"],
                "disk_full": self.stats["clips_skipped_disk"],
                "budget": self.stats["clips_skipped_budget"],
            },
            "budget_skip_reason": self._budget_skip,
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
            try:
                info = self._builder.build(buffered)
            except SamplingFailed as exc:
                cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
                error = self._plugin_failed("sampling", str(exc), cause)
                self._deliver(self._builder.failed_clip(buffered, error))
                continue
            if info is not None and not self.video_queue.put(info, self.stop_event):
                self._discard(info, "stopped")

    def _inference_worker(self) -> None:
        while not self.stop_event.is_set():
            info, stale = self.video_queue.get(timeout=0.2)
            for old in stale:
                self._discard(old, "stale")
            if info is None:
                continue
            result = self._infer(info)
            if result is not None:
                self._deliver(result)

    def _infer(self, info: VideoInfo) -> ResultData | None:
        """The clip's result; None when a budget is spent (the clip is skipped, counted)."""
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
            self._schema,
            annotate=self.config.annotate,
            boxes=[f.boxes for f in info.frames],
            reference=self.reference,
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
        except BudgetSpent as exc:
            self._skip_for_budget(info, str(exc))
            return None
        except StructuredAnswerError as exc:  # keep what the model said, next to why not
            text, model, tokens, error = (
                exc.answer.text,
                exc.answer.model,
                exc.answer.tokens,
                str(exc),
            )
        except (ProviderError, ValueError) as exc:
            error = str(exc)
        except Exception as exc:
            error = self._plugin_failed(stage, what, exc)
        if self._budget_skip is not None:
            log.info("VLM budget available again", extra={"fields": {"stream": self.stream}})
            self._budget_skip = None
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

    def _skip_for_budget(self, info: VideoInfo, reason: str) -> None:
        """Like a duplicate, the clip gets no result and no file; the status says why."""
        if self._budget_skip is None:
            log.warning(
                "VLM budget spent: clips are skipped until it is available again",
                extra={"fields": {"stream": self.stream, "reason": reason}},
            )
        self._budget_skip = reason
        self.stats["clips_skipped_budget"] += 1
        self._builder.not_analysed()
        self._forget(info)

    def _strategy_name(self) -> str:
        return self._builder.strategy_name()

    @property
    def paused_reason(self) -> str | None:
        return self._builder.paused_reason

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
        self._forget(info)

    def _forget(self, info: VideoInfo) -> None:
        info.frames = []
        path = self.store.path_of(info.clip_id)
        if path is not None:
            path.unlink(missing_ok=True)
