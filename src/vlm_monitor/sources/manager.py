"""The registry of running streams: add/remove at runtime, concurrently and safely."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from vlm_monitor.broadcast.bus import EventBus
from vlm_monitor.config import StreamConfig
from vlm_monitor.hub import StreamHub
from vlm_monitor.sources.source import Source
from vlm_monitor.sources.url import redact_url
from vlm_monitor.storage.db import Store
from vlm_monitor.types import ConflictError, Event, Frame, LimitError, NotFoundError
from vlm_monitor.webrtc.inbox import WhipInboxes

log = logging.getLogger("vlm_monitor.streams")


class StreamHooks(Protocol):
    """Consumers started and stopped with each stream (clips, analyzers). Called from a worker
    thread: they may block."""

    def on_stream_added(self, stream: StreamConfig) -> None: ...

    def on_stream_removed(self, stream_id: str) -> None: ...


class StreamExistsError(ConflictError):
    def __init__(self, stream_id: str) -> None:
        super().__init__(f"stream {stream_id!r} already exists")
        self.stream_id = stream_id


class StreamNotFoundError(NotFoundError, KeyError):
    def __init__(self, stream_id: str, message: str | None = None) -> None:
        super().__init__(message or f"unknown stream {stream_id!r}")
        self.stream_id = stream_id


@dataclass
class ManagedStream:
    config: StreamConfig
    persistent: bool  # added through the API (stored), not from the config file
    active: bool = True  # cleared on removal so a stopping thread publishes nothing more
    source: Source = field(init=False)


class StreamManager:
    """Mutations are serialised by one asyncio lock (the original backend's unlocked registry
    of running work, changed from several threads, is the bug this avoids); reads are
    lock-free snapshots. A removed stream's subscribers end at once; its decoding thread is
    stopped off the event loop."""

    def __init__(self, hub: StreamHub, bus: EventBus, store: Store, max_streams: int = 256) -> None:
        self.hub, self.bus, self.store = hub, bus, store
        self.max_streams = max_streams
        self._streams: dict[str, ManagedStream] = {}
        self._lock = asyncio.Lock()
        self.whip = WhipInboxes()
        self.hooks: list[StreamHooks] = []
        self.status_extras: list[Callable[[str], dict[str, Any]]] = []
        # (stream id, demuxer stream, packet) for every encoded packet: event clips.
        self.packet_sink: Callable[[str, Any, Any], None] | None = None

    def __contains__(self, stream_id: str) -> bool:
        return stream_id in self._streams

    def ids(self) -> list[str]:
        return list(self._streams)

    def get(self, stream_id: str) -> ManagedStream:
        try:
            return self._streams[stream_id]
        except KeyError:
            raise StreamNotFoundError(stream_id) from None

    async def add(
        self, config: StreamConfig, persistent: bool, already_stored: bool = False
    ) -> dict[str, Any]:
        async with self._lock:
            if config.id in self._streams:
                raise StreamExistsError(config.id)
            if len(self._streams) >= self.max_streams:
                raise LimitError(f"at most {self.max_streams} streams (server.max_streams)")
            managed = ManagedStream(config, persistent)

            def on_frame(frame: Frame) -> None:
                if managed.active:
                    self.hub.publish(frame)

            inbox = self.whip.get(config.id) if config.url.startswith("whip:") else None
            managed.source = Source(config, on_frame, self._state_changed, inbox)
            sink = self.packet_sink
            if sink is not None:
                stream_id = config.id
                managed.source.on_packet = lambda stream, packet: sink(stream_id, stream, packet)
            if persistent and not already_stored:
                await self.store.save_stream(
                    config.id, config.model_dump(mode="json", by_alias=True)
                )
            self._streams[config.id] = managed
            managed.source.start()
            for hook in self.hooks:
                await asyncio.to_thread(hook.on_stream_added, config)
        log.info(
            "stream added", extra={"fields": {"stream": config.id, "url": redact_url(config.url)}}
        )
        return self.status(config.id)

    async def update(self, stream_id: str, changes: dict[str, Any]) -> StreamConfig:
        """A new configuration for a running stream (fields a running source can take
        without reconnecting, e.g. analyzers); persisted when the stream was added through the
        API. Raises pydantic.ValidationError on bad values."""
        async with self._lock:
            managed = self.get(stream_id)
            doc = {**managed.config.model_dump(mode="json", by_alias=True), **changes}
            config = StreamConfig.model_validate(doc)
            if managed.persistent:
                await self.store.save_stream(
                    stream_id, config.model_dump(mode="json", by_alias=True)
                )
            managed.config = config
        return config

    async def remove(self, stream_id: str) -> None:
        async with self._lock:
            managed = self.get(stream_id)
            del self._streams[stream_id]
            managed.active = False
            self.hub.close_stream(stream_id)
            if managed.persistent:
                await self.store.delete_stream(stream_id)
            for hook in self.hooks:
                await asyncio.to_thread(hook.on_stream_removed, stream_id)
        await asyncio.to_thread(managed.source.stop)
        log.info("stream removed", extra={"fields": {"stream": stream_id}})

    async def stop_all(self) -> None:
        async with self._lock:
            streams = list(self._streams.values())
            self._streams.clear()
        for managed in streams:
            managed.active = False
            self.hub.close_stream(managed.config.id)
            for hook in self.hooks:
                await asyncio.to_thread(hook.on_stream_removed, managed.config.id)
        await asyncio.gather(*(asyncio.to_thread(m.source.stop) for m in streams))

    def _state_changed(self, source: Source) -> None:
        """Called from the decoding thread."""
        self.bus.publish_threadsafe(Event("stream.state", source.id, self._status_of(source)))

    def _status_of(self, source: Source) -> dict[str, Any]:
        status = source.status()
        subs = self.hub.subscriptions(source.id)
        status["subscribers"] = len(subs)
        return status

    def status(self, stream_id: str, detail: bool = False) -> dict[str, Any]:
        managed = self.get(stream_id)
        status = self._status_of(managed.source)
        status["persistent"] = managed.persistent
        for extra in self.status_extras:
            status.update(extra(stream_id))
        if detail:
            status["subscriptions"] = [s.status() for s in self.hub.subscriptions(stream_id)]
            status["config"] = managed.config.model_dump(mode="json", by_alias=True)
            status["config"]["url"] = redact_url(managed.config.url)
            if status["config"].get("whip_token"):
                status["config"]["whip_token"] = "***"  # never shown back
        return status

    def statuses(self) -> list[dict[str, Any]]:
        return [self.status(sid) for sid in list(self._streams) if sid in self._streams]
