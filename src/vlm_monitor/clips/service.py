"""Clips for every stream that asks for them: hub subscription -> processor -> result sink."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vlm_monitor.clips.boxes import LatestBoxes
from vlm_monitor.clips.dispatch import RedisClipDispatcher
from vlm_monitor.clips.processor import AsyncVideoProcessor
from vlm_monitor.clips.store import ClipStore
from vlm_monitor.clips.types import ResultData
from vlm_monitor.config import BusConfig, ClipsConfig, StreamConfig, parse_size
from vlm_monitor.geometry import Size, fit_budget
from vlm_monitor.hub import StreamHub, Subscription
from vlm_monitor.storage.paths import inside
from vlm_monitor.vlm.base import VlmAnswer, VlmRequest
from vlm_monitor.vlm.reference import read_reference
from vlm_monitor.vlm.registry import ProviderSet
from vlm_monitor.vlm.schemas import resolve_schema

log = logging.getLogger("vlm_monitor.clips")
REMOVAL_WAIT_S = 2.0


class StreamClips:
    """One stream's processor, fed by a hub subscription at ``input_fps`` from a thread."""

    def __init__(
        self,
        stream: str,
        config: ClipsConfig,
        hub: StreamHub,
        processor: AsyncVideoProcessor,
        boxes: LatestBoxes | None = None,
    ) -> None:
        """``boxes``: where the analyzers' boxes come from when frames are annotated."""
        self.stream, self.config, self.processor = stream, config, processor
        self._hub, self._boxes = hub, boxes
        self._size = parse_size(config.size)
        self._sub: Subscription = hub.subscribe(
            stream, "clips", "latest", frame_rate=config.input_fps, size=self._size
        )
        self._thread = threading.Thread(target=self._feed, name=f"clips-feed-{stream}", daemon=True)

    def start(self) -> None:
        self.processor.start()
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._hub.unsubscribe(self._sub)
        self._thread.join(5)
        self.processor.stop(timeout)

    def _feed(self) -> None:
        while (frame := self._sub.get()) is not None:
            # The boxes seen around this frame now: by the time the clip is sent, the
            # analyzers have moved on.
            boxes = None if self._boxes is None else self._boxes.around(self.stream, frame.ts)
            # The shared downscale: computed once per frame for every consumer of this budget.
            image = frame.bgr_fit(self._size)
            # Stamped on arrival (ages, lags); sampled on when it was shot.
            self.processor.add_frame(image, frame.ts, frame.seq, frame.capture_ts, boxes)


class ClipService:
    def __init__(
        self,
        providers: ProviderSet,
        hub: StreamHub,
        publish: Callable[[dict[str, Any]], object],
        data_dir: Path,
        redis_bus: BusConfig | None = None,
    ) -> None:
        """``publish``: where each clip's result goes (the result sink's ``clip``); called in
        the stream's inference thread, it may block."""
        self.hub, self.publish = hub, publish
        self.redis_bus = redis_bus  # set when clip jobs may go to Redis workers
        self.clips_dir = data_dir / "clips"
        self.providers = providers
        self.running: dict[str, StreamClips] = {}
        self._lock = threading.Lock()
        # Fed by the result sink (``ResultSink.listen(clips.boxes.on_result)``).
        self.boxes = LatestBoxes()

    def start_stream(self, stream: StreamConfig) -> None:
        """Blocking (starts threads, reads the reference picture): call from a thread or at
        start-up."""
        config = stream.clips
        if config is None or not config.enabled:
            return
        store = ClipStore(
            self.clips_dir / stream.id, config.max_age_s, config.max_total_mb, config.min_free_mb
        )
        reference = self._reference(stream, parse_size(config.size))
        processor = AsyncVideoProcessor(
            stream.id, config, store, self._analyzer(config), self._on_result, reference
        )
        if config.annotate:
            self.boxes.watch(stream.id)
        boxes = self.boxes if config.annotate else None
        runner = StreamClips(stream.id, config, self.hub, processor, boxes)
        with self._lock:
            self.running[stream.id] = runner
        runner.start()

    def _analyzer(self, config: ClipsConfig) -> Callable[[VlmRequest], tuple[str, VlmAnswer]]:
        if config.dispatch == "redis" and self.redis_bus is not None:
            bus = self.redis_bus
            return RedisClipDispatcher(bus.url, bus.channel, config, config.max_backlog)
        return self.providers.analyzer(config)

    def _reference(self, stream: StreamConfig, size: Size) -> np.ndarray | None:
        """The stream's reference picture at about the clip frames' size, or None (a file
        that went away since the configuration was checked is logged, not fatal)."""
        if stream.reference_frame is None:
            return None
        try:
            pixels = read_reference(stream.reference_frame)
        except (OSError, ValueError) as exc:
            log.error(
                "reference_frame not read; clips go without it",
                extra={"fields": {"stream": stream.id, "error": str(exc)}},
            )
            return None
        fitted = fit_budget(pixels.shape[1], pixels.shape[0], *size)
        return cv2.resize(pixels, fitted, interpolation=cv2.INTER_AREA)

    def stop_stream(self, stream_id: str, timeout: float = 30.0) -> None:
        with self._lock:
            runner = self.running.pop(stream_id, None)
        self.boxes.forget(stream_id)
        if runner is not None:
            runner.stop(timeout)

    def stop_all(self) -> None:
        for sid in list(self.running):
            self.stop_stream(sid)

    # StreamHooks: the stream manager calls these from a worker thread.
    def on_stream_added(self, stream: StreamConfig) -> None:
        self.start_stream(stream)

    def on_stream_removed(self, stream_id: str) -> None:
        # Removal holds the stream registry's lock: a VLM call still running (up to its
        # provider timeout) finishes on its own thread and its result is still stored.
        self.stop_stream(stream_id, timeout=REMOVAL_WAIT_S)

    def _on_result(self, result: ResultData) -> None:
        self.publish(result.to_json())

    def clip_path(self, stream: str, clip_id: str) -> Path | None:
        """The clip's file, or None; never a path outside the clips directory, whatever a
        stored result claims its clip is."""
        path = inside(self.clips_dir, stream, f"{clip_id}.mp4")
        return path if path is not None and path.is_file() else None

    def skipped_by_provider(self) -> dict[str, dict[str, int]]:
        """Clips that got no call (duplicate, still, budget), by the provider each stream asks
        first: what the cost governor saved it."""
        out: dict[str, dict[str, int]] = {}
        for runner in list(self.running.values()):
            names = self.providers.wanted(runner.config)
            if not names:
                continue
            skipped = runner.processor.get_statistics()["skipped"]
            mine = out.setdefault(names[0], {})
            for reason in ("duplicate", "still", "budget"):
                mine[reason] = mine.get(reason, 0) + skipped[reason]
        return out

    def status(self, stream_id: str) -> dict[str, Any] | None:
        runner = self.running.get(stream_id)
        if runner is None:
            return None
        return {**runner.processor.get_statistics(), "frames_sent": self._frames_sent(runner)}

    def _frames_sent(self, runner: StreamClips) -> dict[str, dict[str, Any]]:
        """Per provider: how many frames of a clip are sent and at what size (the prompt
        counted as its template; the clip frames' size once one has come)."""
        config, processor = runner.config, runner.processor
        sample = VlmRequest(
            runner.stream,
            config.prompt,
            [],
            [],
            schema=resolve_schema(config.schema_),
            annotate=config.annotate,
            reference=processor.reference,
        )
        size = processor.frame_size or parse_size(config.size)
        plans = self.providers.frame_plans(config, sample, size)
        return {name: {**plan, "annotate": config.annotate} for name, plan in plans.items()}
