"""The long-lived services of one backend process, built from the configuration."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vlm_monitor.broadcast.bus import EventBus
from vlm_monitor.clips.service import ClipService
from vlm_monitor.config import Config, StreamConfig
from vlm_monitor.hub import StreamHub
from vlm_monitor.hub.encode import JpegEncoder
from vlm_monitor.hub.remote import RemoteSubscriptions
from vlm_monitor.sources.manager import StreamManager
from vlm_monitor.storage.db import Store
from vlm_monitor.vlm.registry import ProviderSet

log = logging.getLogger("vlm_monitor.services")


class Services:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.started_at = time.time()
        self.hub = StreamHub()
        self.bus = EventBus()
        self.store = Store(config.server.data_dir)
        self.streams = StreamManager(self.hub, self.bus, self.store)
        self.jpeg = JpegEncoder(config.server.jpeg_quality)
        self.remote = RemoteSubscriptions()
        self.providers = ProviderSet(config.vlm.providers)
        self.clips = ClipService(
            self.providers, self.hub, self.bus, self.store, Path(config.server.data_dir)
        )
        self.streams.hooks.append(self.clips)
        self.streams.status_extras.append(self._clip_status)

    def _clip_status(self, stream_id: str) -> dict[str, Any]:
        stats = self.clips.status(stream_id)
        return {} if stats is None else {"clips": stats}

    async def start(self) -> None:
        self.bus.bind(asyncio.get_running_loop())
        for stream in self.config.streams:
            await self.streams.add(stream, persistent=False)
        for stored in await self.store.load_streams():
            try:
                stream = StreamConfig.model_validate(stored)
            except ValidationError as exc:
                log.error(
                    "stored stream is invalid; skipped",
                    extra={"fields": {"stream": stored.get("id"), "error": str(exc)}},
                )
                continue
            if stream.id in self.streams:
                log.warning(
                    "stored stream shadowed by the config file",
                    extra={"fields": {"stream": stream.id}},
                )
                continue
            await self.streams.add(stream, persistent=True, already_stored=True)

    async def stop(self) -> None:
        await self.streams.stop_all()
        await asyncio.to_thread(self.clips.stop_all)
        self.providers.close()
        self.jpeg.close()
        self.store.close()
