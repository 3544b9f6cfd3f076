"""Clips for every stream that asks for them: hub subscription -> processor -> store + events."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from vlm_monitor.broadcast.bus import EventBus
from vlm_monitor.clips.processor import AsyncVideoProcessor
from vlm_monitor.clips.store import ClipStore
from vlm_monitor.clips.types import ResultData
from vlm_monitor.config import ClipsConfig, StreamConfig, VlmProviderConfig, parse_size
from vlm_monitor.hub import StreamHub, Subscription
from vlm_monitor.storage.db import Store
from vlm_monitor.types import Event
from vlm_monitor.vlm.base import ProviderError, VlmAnswer, VlmRequest
from vlm_monitor.vlm.registry import build_provider
from vlm_monitor.vlm.resilience import GuardedProvider, ProviderGroup

log = logging.getLogger("vlm_monitor.clips")


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

    def stop(self) -> None:
        self._hub.unsubscribe(self._sub)
        self._thread.join(5)
        self.processor.stop()

    def _feed(self) -> None:
        while (frame := self._sub.get()) is not None:
            # The shared downscale: computed once per frame for every consumer of this size.
            self.processor.add_frame(frame.bgr(self._size), frame.ts, frame.seq)


class ClipService:
    def __init__(
        self,
        providers: list[VlmProviderConfig],
        hub: StreamHub,
        bus: EventBus,
        store: Store,
        data_dir: Path,
    ) -> None:
        self.hub, self.bus, self.store = hub, bus, store
        self.clips_dir = data_dir / "clips"
        self.providers: dict[str, GuardedProvider] = {}
        for cfg in providers:
            try:
                self.providers[cfg.name] = build_provider(cfg)
            except ProviderError as exc:  # e.g. a missing key: that provider is unavailable
                log.error(
                    "VLM provider unavailable",
                    extra={"fields": {"provider": cfg.name, "error": str(exc)}},
                )
        self.running: dict[str, StreamClips] = {}
        self._lock = threading.Lock()

    def _group(self, config: ClipsConfig) -> ProviderGroup | None:
        names = (
            config.provider
            if isinstance(config.provider, list)
            else ([config.provider] if config.provider else list(self.providers)[:1])
        )
        chosen = [self.providers[n] for n in names if n in self.providers]
        return ProviderGroup(chosen, config.strategy) if chosen else None

    def start_stream(self, stream: StreamConfig) -> None:
        """Blocking (starts threads): call from a thread or at start-up."""
        config = stream.clips
        if config is None or not config.enabled:
            return
        unknown = [
            n
            for n in (
                config.provider
                if isinstance(config.provider, list)
                else [config.provider]
                if config.provider
                else []
            )
            if n not in self.providers
        ]
        if unknown:
            log.error(
                "clips: unknown or unavailable provider(s); results will carry the error",
                extra={"fields": {"stream": stream.id, "providers": unknown}},
            )
        group = self._group(config)
        store = ClipStore(
            self.clips_dir / stream.id, config.max_age_s, config.max_total_mb, config.min_free_mb
        )

        def analyze(request: VlmRequest) -> tuple[str, VlmAnswer]:
            if group is None:
                raise ProviderError(f"no VLM provider available (configured: {config.provider})")
            return group.analyze(request)

        processor = AsyncVideoProcessor(stream.id, config, store, analyze, self._on_result)
        runner = StreamClips(stream.id, config, self.hub, processor)
        with self._lock:
            self.running[stream.id] = runner
        runner.start()

    def stop_stream(self, stream_id: str) -> None:
        with self._lock:
            runner = self.running.pop(stream_id, None)
        if runner is not None:
            runner.stop()

    def stop_all(self) -> None:
        for sid in list(self.running):
            self.stop_stream(sid)
        for provider in self.providers.values():
            provider.close()

    def _on_result(self, result: ResultData) -> None:
        """Inference thread: store first (the event then carries the row id), then push."""
        doc = result.to_json()
        try:
            result.id = self.store.add_result_sync(doc)
        except Exception:
            log.exception("storing a result failed", extra={"fields": {"stream": result.stream}})
        self.bus.publish_threadsafe(Event("result", result.stream, doc))
        log.info(
            "clip result",
            extra={
                "fields": {
                    "stream": result.stream,
                    "id": result.id,
                    "provider": result.provider,
                    "inference_s": round(result.inference_duration, 3),
                    "error": result.error,
                }
            },
        )

    def clip_path(self, stream: str, clip_id: str) -> Path | None:
        path = self.clips_dir / stream / f"{clip_id}.mp4"
        return path if path.is_file() else None

    # StreamHooks: the stream manager calls these from a worker thread.
    def on_stream_added(self, stream: StreamConfig) -> None:
        self.start_stream(stream)

    def on_stream_removed(self, stream_id: str) -> None:
        self.stop_stream(stream_id)

    def status(self, stream_id: str) -> dict[str, Any] | None:
        runner = self.running.get(stream_id)
        return None if runner is None else runner.processor.get_statistics()

    def provider_status(self) -> dict[str, Any]:
        out = {}
        for name, p in self.providers.items():
            calls, tokens = p.per_minute()
            out[name] = {
                **vars(p.stats),
                "calls_per_min": calls,
                "tokens_per_min": tokens,
                "circuit_open": p.breaker_open,
            }
        return out
