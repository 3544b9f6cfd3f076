"""Clips for every stream that asks for them: hub subscription -> processor -> result sink."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vlm_monitor.clips.dispatch import RedisClipDispatcher
from vlm_monitor.clips.processor import AsyncVideoProcessor
from vlm_monitor.clips.store import ClipStore
from vlm_monitor.clips.types import ResultData
from vlm_monitor.config import BusConfig, ClipsConfig, StreamConfig, parse_size
from vlm_monitor.hub import StreamHub, Subscription
from vlm_monitor.storage.paths import inside
from vlm_monitor.vlm.base import VlmAnswer, VlmRequest
from vlm_monitor.vlm.registry import ProviderSet

log = logging.getLogger("vlm_monitor.clips")
REMOVAL_WAIT_S = 2.0


class StreamClips:
    """One stream's processor, fed by a hub subscription at ``input_fps`` from a thread."""

    def __init__(
        self, stream: str, config: ClipsConfig, hub: StreamHub, processor: AsyncVideoProcessor
    ) -> None:
        self.stream, self.config, self.processor = stream, config, processor
        self._hub = hub
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
            # The shared downscale: computed once per frame for every consumer of this budget.
            self.processor.add_frame(frame.bgr_fit(self._size), frame.ts, frame.seq, frame.pts_time)


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

    def start_stream(self, stream: StreamConfig) -> None:
        """Blocking (starts threads): call from a thread or at start-up."""
        config = stream.clips
        if config is None or not config.enabled:
            return
        store = ClipStore(
            self.clips_dir / stream.id, config.max_age_s, config.max_total_mb, config.min_free_mb
        )
        processor = AsyncVideoProcessor(
            stream.id, config, store, self._analyzer(config), self._on_result
        )
        runner = StreamClips(stream.id, config, self.hub, processor)
        with self._lock:
            self.running[stream.id] = runner
        runner.start()

    def _analyzer(self, config: ClipsConfig) -> Callable[[VlmRequest], tuple[str, VlmAnswer]]:
        if config.dispatch == "redis" and self.redis_bus is not None:
            bus = self.redis_bus
            return RedisClipDispatcher(bus.url, bus.channel, config, config.max_backlog)
        return self.providers.analyzer(config)

    def stop_stream(self, stream_id: str, timeout: float = 30.0) -> None:
        with self._lock:
            runner = self.running.pop(stream_id, None)
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

    def status(self, stream_id: str) -> dict[str, Any] | None:
        runner = self.running.get(stream_id)
        return None if runner is None else runner.processor.get_statistics()
