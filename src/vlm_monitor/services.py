"""The long-lived services of one backend process, built from the configuration."""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from redis.exceptions import RedisError

from vlm_monitor.analyzers.builtin import check_analyzers
from vlm_monitor.analyzers.service import AnalyzerService
from vlm_monitor.broadcast.bus import EventBus
from vlm_monitor.broadcast.redis_relay import RedisRelay
from vlm_monitor.broadcast.socketio import SocketIOBridge
from vlm_monitor.clips.service import ClipService
from vlm_monitor.config import Config, StreamConfig
from vlm_monitor.control import StreamControl
from vlm_monitor.events import EventService
from vlm_monitor.events.clips import PacketRings
from vlm_monitor.flows.manager import FlowManager
from vlm_monitor.flows.ports import FlowPorts
from vlm_monitor.hub import StreamHub
from vlm_monitor.hub.encode import JpegEncoder
from vlm_monitor.hub.remote import RemoteSubscriptions
from vlm_monitor.jobs.status import JobStatusPoller
from vlm_monitor.memory import HeapTrimmer
from vlm_monitor.notify.apprise_notify import Notifier
from vlm_monitor.notify.mqtt import MqttBridge
from vlm_monitor.realtime.metrics import RealtimeMetrics
from vlm_monitor.results import ResultSink, SessionMap
from vlm_monitor.sources.manager import StreamManager
from vlm_monitor.storage.db import Store
from vlm_monitor.storage.writer import AnalysisWriter
from vlm_monitor.vlm.audit import AUDITED_PARAMS, AuditLog
from vlm_monitor.vlm.budget import SharedLedger, limits
from vlm_monitor.vlm.registry import ProviderSet
from vlm_monitor.webrtc.whep import WhepService
from vlm_monitor.webrtc.whip import WhipService, restrict_ice

log = logging.getLogger("vlm_monitor.services")


class Services:
    def __init__(self, config: Config) -> None:
        # Plug-ins the configuration names are built first: one that cannot be raises
        # PluginError, and the server does not start (nor open anything) without it.
        if config.analysis.dispatch == "local":  # else workers build them
            check_analyzers(config.streams)
        self.providers = ProviderSet(config.vlm.providers, config.vlm.budget)
        if config.vlm.shared_budgets and config.bus.kind == "redis":
            self.providers.share_budgets(SharedLedger.from_url(config.bus.url, config.bus.channel))
        if config.vlm.audit.enabled:
            audit = AuditLog(
                Path(config.server.data_dir) / "audit",
                config.vlm.audit.max_mb,
                config.vlm.audit.keep_days,
                {p.name: p.model_dump(include=AUDITED_PARAMS) for p in config.vlm.providers},
            )
            self.providers.audit(audit.record)
        self.config = config
        self.started_at = time.time()
        self.refused: collections.Counter[str] = collections.Counter()  # by the guard, by status
        self.hub = StreamHub()
        self.heap = HeapTrimmer()
        self.bus = EventBus()
        self.store = Store(config.server.data_dir)
        self.streams = StreamManager(self.hub, self.bus, self.store, config.server.max_streams)
        self.jpeg = JpegEncoder(config.server.jpeg_quality)
        self.remote = RemoteSubscriptions()
        self.sessions = SessionMap(self.store, config.analysis.session_pattern)
        self.analysis_writer = AnalysisWriter(self.store, config.analysis.keep_results)
        self.results = ResultSink(self.bus, self.store, self.sessions, self.analysis_writer)
        ev = config.events
        # The ring holds pre-roll and post-roll, plus a group of pictures to start from.
        self.packet_rings = PacketRings(ev.preroll_s + ev.postroll_s + 4) if ev.clips else None
        self.events = EventService(
            Path(config.server.data_dir),
            self.bus,
            self.hub.latest,
            ev.idle_close_s,
            ev.keep_days,
            ev.keep_max,
            ev.snapshot_quality,
            self.packet_rings,
            ev.preroll_s,
            ev.postroll_s,
            ev.min_free_mb,
            ev.max_evidence_mb,
        )
        if self.packet_rings is not None:
            self.streams.packet_sink = self.packet_rings.put
            self.streams.hooks.append(self.packet_rings)
        self.results.listen(self.events.on_result)
        self.mqtt: MqttBridge | None = None
        if config.mqtt is not None:
            self.mqtt = MqttBridge(config.mqtt, [s.id for s in config.streams])
            self.events.subscribers.append(self.mqtt.on_event)
            self.events.state_subscribers.append(self.mqtt.on_stream_state)
            self.results.listen(self.mqtt.on_result)
        self.notifier: Notifier | None = None
        if config.notify:
            self.notifier = Notifier(config.notify, self.events.snapshots.path)
            self.events.subscribers.append(self.notifier.on_event)
        self.clips = ClipService(
            self.providers,
            self.hub,
            self.results.clip,
            Path(config.server.data_dir),
            config.bus if config.bus.kind == "redis" else None,
        )
        self.results.listen(self.clips.boxes.on_result)
        self.relay: RedisRelay | None = None
        self.jobs: JobStatusPoller | None = None
        redis_url = None
        node = config.bus.node_id or f"{socket.gethostname()}:{config.server.port}"
        if config.bus.kind == "redis":
            self.relay = RedisRelay(self.bus, config.bus.url, config.bus.channel, node)
            self.jobs = JobStatusPoller(config.bus.url, config.bus.channel)
            redis_url = config.bus.url
        self.analyzers = AnalyzerService(
            self.hub,
            config.analysis,
            self.results.analysis,
            (config.bus.url, config.bus.channel, node)
            if config.analysis.dispatch == "redis"
            else None,
        )
        self.control = StreamControl(
            self.streams,
            self.analyzers,
            self.sessions,
            config.analysis,
            config.server.media_dir,
            [p.name for p in config.vlm.providers],
        )
        self.socketio = SocketIOBridge(
            self.bus, redis_url, config.bus.channel, config.server.cors_origins
        )
        self.flows = FlowManager(
            FlowPorts(
                hub=self.hub,
                results=self.results,
                providers=self.providers.providers,
                latest_analysis=self.analyzers.latest,
                face_models=self.analyzers.models,
                webhook_allow=config.server.webhook_allow,
            ),
            events=self.bus,
            store=self.store,
            max_flows=config.server.max_flows,
        )
        self.realtime_metrics = RealtimeMetrics()
        restrict_ice(config.webrtc.ice_addresses)
        self.whip = WhipService(config.webrtc.publisher_timeout_s)
        self.whep = WhepService(self.hub)
        self.streams.hooks += [self.clips, self.analyzers]
        self.streams.status_extras.append(self._extra_status)

    def bus_status(self) -> dict[str, Any]:
        if self.relay is None:
            return {"kind": "local"}
        status = self.relay.status()
        if self.analyzers.remote is not None:
            # The result collector of analyzer jobs: its own Redis connection and duplicates.
            status["analysis_jobs"] = self.analyzers.remote.status()
        return status

    def provider_status(self, spend: bool = False) -> dict[str, Any]:
        """``GET /api/providers`` (``spend``: blocking, call in a thread) and ``/metrics``."""
        return self.providers.status(self.clips.skipped_by_provider(), spend)

    def budget_status(self) -> dict[str, Any]:
        """``GET /api/budgets``: vlm.budget and each stream's clips.budget, with what they
        spent. Blocking (the ledger may ask Redis): call in a thread."""
        governor = self.providers.governor
        streams = {}
        for sid, runner in list(self.clips.running.items()):
            stats = runner.processor.get_statistics()
            streams[sid] = {
                "limits": limits(runner.config.budget),
                "spend": governor.spend(f"stream:{sid}"),
                "skipped": stats["skipped"],
                "budget_skip_reason": stats["budget_skip_reason"],
            }
        return {**self.providers.budget_status(), "streams": streams}

    def job_status(self) -> dict[str, Any] | None:
        """Clip job queue and workers (bus kind redis), asked now. Blocking: call in a thread.
        ``/metrics`` reads ``jobs.latest`` instead, refreshed in the background."""
        if self.jobs is None:
            return None
        try:
            return self.jobs.refresh()
        except RedisError as exc:
            return {"error": f"redis: {exc}"}

    def _extra_status(self, stream_id: str) -> dict[str, Any]:
        extra: dict[str, Any] = {
            "analyzers": self.analyzers.status(stream_id),
            "degraded": self.analyzers.degraded(stream_id),
        }
        session = self.sessions.resolve(stream_id)
        extra["session"] = None if session is None else session.to_json()
        clips = self.clips.status(stream_id)
        if clips is not None:
            extra["clips"] = clips
        publish = self.whip.publishes.get(stream_id)
        if publish is not None:
            extra["publisher"] = publish.status()
        view = self.whep.status(stream_id)
        if view is not None:
            extra["webrtc_view"] = view
        return extra

    async def start(self) -> None:
        self.heap.start()
        loop = asyncio.get_running_loop()
        self.bus.bind(loop)
        self.results.bind(loop)
        await self.analyzers.bind(loop)
        await self.sessions.load()
        await self.events.start()  # before streams: their first states count
        if self.mqtt is not None:
            self.mqtt.start()
        if self.notifier is not None:
            self.notifier.start()
        if self.relay is not None:
            await self.relay.start()
        if self.jobs is not None:
            await self.jobs.start()
        await self.socketio.start()
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
        await self.flows.load(self.config.flows)

    async def stop(self) -> None:
        await self.whip.stop_all()
        await self.whep.stop_all()
        await self.flows.stop_all()
        await self.streams.stop_all()
        await asyncio.to_thread(self.clips.stop_all)
        await self.analyzers.stop_all()
        await self.socketio.stop()
        if self.jobs is not None:
            await self.jobs.stop()
        if self.relay is not None:
            await self.relay.stop()
        await self.events.stop()
        if self.mqtt is not None:
            await self.mqtt.stop()
        if self.notifier is not None:
            await self.notifier.stop()
        await asyncio.to_thread(self.analysis_writer.close)
        self.providers.close()
        await self.heap.stop()
        self.jpeg.close()
        self.store.close()
