"""Incidents from results: fed by the ResultSink and by stream states on the bus, stored in
SQLite with a snapshot, pushed on ``/ws/events`` as ``{"type": "event", "event": {...}}`` and
handed to subscribers (MQTT, notifications).

The tracker lives on the event loop; ResultSink listeners run on producers' threads, so each
result hops onto the loop first. Changes are written and pushed by one task, in the order they
happened, so an ``update`` is never seen before its ``open``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlm_monitor.broadcast.bus import EventBus
from vlm_monitor.clips.store import DiskFullError, require_free
from vlm_monitor.events.clips import PacketRings
from vlm_monitor.events.model import Change, EventTracker, Incident
from vlm_monitor.events.snapshot import SnapshotFiles, render
from vlm_monitor.events.store import EventStore
from vlm_monitor.types import Event, Frame

log = logging.getLogger("vlm_monitor.events")
Subscriber = Callable[[str, dict[str, Any], bytes | None], Coroutine[Any, Any, None]]
QUEUE_CHANGES = 10_000  # beyond this a flood is dropped and counted, not held in memory
SWEEP_S = 5.0  # seconds between idle-close checks
CAP_EVERY_S = 60.0  # seconds between evidence size checks (also after each clip)


@dataclass(frozen=True)
class _Work:
    action: str
    doc: dict[str, Any]
    frame: Frame | None
    evidence: dict[str, Any] | None
    incident: Incident | None = None  # the tracker's, told when its snapshot is refused


class EventService:
    def __init__(
        self,
        data_dir: Path,
        bus: EventBus,
        latest_frame: Callable[[str], Frame | None],
        idle_close_s: float = 120.0,
        keep_days: float = 30.0,
        keep_max: int = 10_000,
        snapshot_quality: int = 85,
        clips: PacketRings | None = None,
        preroll_s: float = 5.0,
        postroll_s: float = 5.0,
        min_free_mb: float = 200.0,
        max_evidence_mb: float = 2000.0,
    ) -> None:
        self.bus, self.latest_frame = bus, latest_frame
        self.store = EventStore(data_dir / "vlm-monitor.db")
        self.snapshots = SnapshotFiles(data_dir / "events")
        self.tracker = EventTracker(idle_close_s)
        self.keep_s, self.keep_max, self.quality = keep_days * 86400, keep_max, snapshot_quality
        self.clips, self.preroll_s, self.postroll_s = clips, preroll_s, postroll_s
        self.min_free_mb, self.max_evidence_mb = min_free_mb, max_evidence_mb
        self._disk_short: str | None = None  # set while evidence is refused: one log a burst
        self._clip_tasks: set[asyncio.Task[None]] = set()
        self.subscribers: list[Subscriber] = []
        # Told every stream.state (stream id, status), e.g. MQTT's retained state topic.
        self.state_subscribers: list[Callable[[str, dict[str, Any]], None]] = []
        self.counts = {"opened": 0, "updated": 0, "closed": 0, "dropped": 0, "failed": 0}
        # Snapshots and clips not written for want of disk, and deleted by the size cap.
        self.evidence = {"refused": 0, "pruned": 0}
        self._queue: asyncio.Queue[_Work] = asyncio.Queue(QUEUE_CHANGES)
        # Rows are read, merged and written back by the writer, acknowledgement and the size
        # cap: one at a time, so none writes back what another just changed.
        self._rows = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def on_result(self, kind: str, origin: str, doc: dict[str, Any]) -> None:
        """A ``ResultSink`` listener: any thread, never blocks."""
        if self._loop is None or kind not in ("analysis", "clip", "alert"):
            return
        if kind == "analysis" and doc.get("analyzer") != "motion" and not _has_incident(doc):
            return  # most readings (heart rate, emotion) never make an incident: stay cheap
        with contextlib.suppress(RuntimeError):  # the loop closed during shutdown
            self._loop.call_soon_threadsafe(self._track, kind, dict(doc))

    def _track(self, kind: str, doc: dict[str, Any]) -> None:
        if kind == "analysis":
            self._apply(self.tracker.analysis(doc))
        elif kind == "clip":
            self._apply(self.tracker.clip(doc))
        else:
            self._apply(self.tracker.flow_alert(doc))

    def _apply(self, changes: list[Change]) -> None:
        for change in changes:
            incident = change.incident
            frame = None
            if change.action == "open" and incident.kind not in ("stream_offline",):
                frame = self.latest_frame(incident.stream)
                incident.has_snapshot = frame is not None
                if self.clips is not None and incident.kind != "stream_online":
                    task = asyncio.create_task(self._clip(incident))
                    self._clip_tasks.add(task)
                    task.add_done_callback(self._clip_tasks.discard)
            work = _Work(change.action, incident.to_json(), frame, incident.evidence, incident)
            self._enqueue(work)

    def _enqueue(self, work: _Work) -> None:
        try:
            self._queue.put_nowait(work)
        except asyncio.QueueFull:
            self.counts["dropped"] += 1

    async def _clip(self, incident: Incident) -> None:
        """The clip: pre-roll from the ring, then ``postroll_s`` of what followed the start."""
        assert self.clips is not None
        await asyncio.sleep(self.postroll_s)
        if incident.evidence_error is not None:
            return  # refused at open: the burst that took the snapshot's room takes this too
        if not await self._room_for(incident):
            self._enqueue(_Work("update", incident.to_json(), None, None))
            return
        try:
            written = await asyncio.to_thread(
                self.clips.write,
                incident.stream,
                incident.started_at - self.preroll_s,
                self.snapshots.clip_path(incident.id),
            )
        except Exception:
            log.exception("event clip failed", extra={"fields": {"id": incident.id}})
            return
        if written:
            # A clip bigger than the whole cap goes at once: its event must not point at it.
            gone = await self.enforce_evidence_cap()
            incident.has_clip = ".mp4" not in gone.get(incident.id, set())
            # Through the writer, after whatever came before: the stored row keeps the clip.
            self._enqueue(_Work("update", incident.to_json(), None, None))

    async def _room_for(self, incident: Incident) -> bool:
        """False, with the reason on the incident, while free disk under the evidence
        directory is below ``min_free_mb``: the event is kept without its evidence."""
        try:
            await asyncio.to_thread(require_free, self.snapshots.directory, self.min_free_mb)
        except DiskFullError as exc:
            self.evidence["refused"] += 1
            if self._disk_short is None:
                log.error("event evidence refused", extra={"fields": {"reason": str(exc)}})
            self._disk_short = incident.evidence_error = str(exc)
            incident.has_snapshot = incident.has_clip = False
            return False
        except OSError:  # free space unreadable: the write itself will say what is wrong
            log.warning("free space under the evidence directory unreadable", exc_info=True)
        if self._disk_short is not None:
            log.info("event evidence resumed")
            self._disk_short = None
        return True

    async def enforce_evidence_cap(self) -> dict[str, set[str]]:
        """The oldest snapshots and clips go while all of them are over ``max_evidence_mb``;
        their events stay, without them. Returns what went (``SnapshotFiles.enforce_cap``)."""
        gone: dict[str, set[str]] = {}
        try:
            gone = await asyncio.to_thread(self.snapshots.enforce_cap, self.max_evidence_mb)
            if not gone:
                return gone
            self.evidence["pruned"] += sum(len(s) for s in gone.values())
            for incident in self.tracker.open.values():
                suffixes = gone.get(incident.id, set())
                incident.has_snapshot = incident.has_snapshot and ".jpg" not in suffixes
                incident.has_clip = incident.has_clip and ".mp4" not in suffixes
            async with self._rows:
                await asyncio.to_thread(self.store.drop_evidence, gone)
        except Exception:  # the sweep that calls it also closes idle events: it must go on
            log.exception("evidence size cap failed")
        return gone

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        now = time.time()
        # Incidents a previous run left open cannot be followed any more: closed at restart.
        for doc in await asyncio.to_thread(self.store.open_events):
            doc.update(state="closed", ended_at=now, updated_at=now)
            await asyncio.to_thread(self.store.save, doc)
        self._tasks = [
            asyncio.create_task(self._writer()),
            asyncio.create_task(self._follow_states()),
            asyncio.create_task(self._sweep()),
        ]

    async def stop(self) -> None:
        # What is queued is written first: stored incidents are never lost to a shutdown.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), 5.0)
        for task in [*self._tasks, *self._clip_tasks]:
            task.cancel()
        for task in [*self._tasks, *self._clip_tasks]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loop = None
        await asyncio.to_thread(self.store.close)

    async def _writer(self) -> None:
        while True:
            work = await self._queue.get()
            try:
                await self._write(work)
            except Exception:
                self.counts["failed"] += 1
                log.exception("event not written", extra={"fields": {"id": work.doc["id"]}})
            finally:
                self._queue.task_done()

    async def _write(self, work: _Work) -> None:
        doc, jpeg = work.doc, None
        if work.frame is not None and work.incident is not None:
            if not await self._room_for(work.incident):
                doc["snapshot_url"], doc["evidence_error"] = None, work.incident.evidence_error
                work = _Work(work.action, doc, None, None)
        if work.frame is not None:
            try:
                jpeg = await asyncio.to_thread(render, work.frame, work.evidence, self.quality)
                await asyncio.to_thread(self.snapshots.write, doc["id"], jpeg)
            except Exception:
                log.exception("snapshot failed", extra={"fields": {"id": doc["id"]}})
                doc["snapshot_url"], jpeg = None, None
        async with self._rows:
            stored = await asyncio.to_thread(self.store.get, doc["id"])
            if stored is not None:
                # Acknowledgement and evidence survive later updates; the snapshot is decided
                # at open, and only the stored row knows whether it was written or pruned since.
                doc["acknowledged"] = doc["acknowledged"] or stored.get("acknowledged", False)
                doc["snapshot_url"] = stored.get("snapshot_url")
                doc["clip_url"] = doc["clip_url"] or stored.get("clip_url")
                doc["evidence_error"] = doc["evidence_error"] or stored.get("evidence_error")
            await asyncio.to_thread(self.store.save, doc)
        self.counts[{"open": "opened", "update": "updated", "close": "closed"}[work.action]] += 1
        self.publish(work.action, doc, jpeg)

    def publish(self, action: str, doc: dict[str, Any], jpeg: bytes | None = None) -> None:
        self.bus.publish(Event("event", doc["stream"], {"action": action, "event": doc}))
        for subscriber in self.subscribers:
            task = asyncio.create_task(subscriber(action, doc, jpeg))
            task.add_done_callback(_log_failure)

    async def _follow_states(self) -> None:
        async with contextlib.aclosing(self.bus.follow()) as events:
            async for doc in events:
                if doc.get("type") == "stream.state" and doc.get("stream"):
                    self._apply(self.tracker.stream_state(doc["stream"], str(doc.get("state"))))
                    for subscriber in self.state_subscribers:
                        try:
                            subscriber(doc["stream"], doc)
                        except Exception:  # a subscriber's bug must not stop incidents
                            log.exception("stream state subscriber failed")

    async def _sweep(self) -> None:
        next_prune = next_cap = 0.0
        while True:
            await asyncio.sleep(min(SWEEP_S, self.tracker.idle_close_s / 2))
            self._apply(self.tracker.expire())
            now = time.time()
            if now >= next_cap:
                next_cap = now + CAP_EVERY_S
                await self.enforce_evidence_cap()
            if now >= next_prune:
                next_prune = now + 600
                await self.prune(now)

    async def prune(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        gone = await asyncio.to_thread(self.store.prune, now - self.keep_s, self.keep_max)
        await asyncio.to_thread(self.snapshots.delete, gone)
        return gone

    async def acknowledge(self, event_id: str) -> dict[str, Any] | None:
        async with self._rows:
            doc = await asyncio.to_thread(self.store.get, event_id)
            if doc is None:
                return None
            for incident in self.tracker.open.values():
                if incident.id == event_id:
                    incident.acknowledged = True
            doc["acknowledged"] = True
            await asyncio.to_thread(self.store.save, doc)
        self.publish("update", doc)
        return doc

    def status(self) -> dict[str, Any]:
        return {
            **self.counts,
            "open": len(self.tracker.open),
            "queued": self._queue.qsize(),
            "evidence_refused": self.evidence["refused"],
            "evidence_pruned": self.evidence["pruned"],
            "evidence_paused": self._disk_short,
        }


def _has_incident(doc: dict[str, Any]) -> bool:
    result = doc.get("result")
    return isinstance(result, dict) and "incident" in result


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("event subscriber failed", exc_info=task.exception())
