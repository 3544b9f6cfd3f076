"""The one path every result takes on its way to people and programs.

Analyzer readings, clip descriptions, flow outputs and alerts, computed here or by a worker,
all go through a ``ResultSink``: it stamps the stream's session, stores the result (SQLite:
clips, flow outputs and alerts at once, analyzer readings batched by the ``AnalysisWriter``),
broadcasts it on the event bus (``/ws/events``; the Socket.IO bridge and the Redis relay read
the bus) and counts it per kind and origin. Listeners (metrics today; events with snapshots
and notifications later) see each result once, after it is stored.

Thread safety: every entry point may be called from any thread. Analyzer readings never block
(a queue to SQLite); ``clip``, ``flow_output`` and ``alert`` write SQLite before they return,
so call them from a thread (the stored row id travels with the broadcast). Broadcasts from a
thread hop onto the event loop; on the loop they are published at once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

from vlm_monitor.broadcast.bus import EventBus
from vlm_monitor.results.sessions import SessionMap
from vlm_monitor.storage.db import Store
from vlm_monitor.storage.writer import AnalysisWriter
from vlm_monitor.types import AnalysisResult, Event

log = logging.getLogger("vlm_monitor.results")
# Clip lines keep the logger operators already filter the clip pipeline by.
clip_log = logging.getLogger("vlm_monitor.clips")

Kind = Literal["analysis", "clip", "flow_output", "alert", "flow_event"]
# local: computed by this server; worker: by an out-of-process worker (Redis or HTTP).
Origin = Literal["local", "worker"]
Listener = Callable[[Kind, str, dict[str, Any]], None]


class ResultSink:
    def __init__(
        self, bus: EventBus, store: Store, sessions: SessionMap, writer: AnalysisWriter
    ) -> None:
        self.bus, self.store, self.sessions, self.writer = bus, store, sessions, writer
        self._listeners: list[Listener] = []
        self._counts: Counter[tuple[str, str]] = Counter()
        self._failed: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def listen(self, listener: Listener) -> None:
        """``listener(kind, origin, doc)`` for every result from now on, on the producer's
        thread: it must be quick and thread-safe."""
        self._listeners.append(listener)

    def analysis(self, result: AnalysisResult) -> None:
        """An analyzer's reading: pushed as an ``analysis`` event, queued for SQLite (a
        reading that finds SQLite too far behind is dropped and counted by the writer)."""
        doc = result.to_json()
        doc["session_id"] = self._session(result.stream)
        self._broadcast(Event("analysis", result.stream, doc))
        stored = {"stream": result.stream, **doc}
        self.writer.put(stored)
        # Listeners get the stream with the reading (events need it; the push has it apart).
        self._done("analysis", result.origin, stored)

    def clip(self, doc: dict[str, Any], origin: Origin = "local") -> dict[str, Any]:
        """A clip's description (ResultData's JSON): stored first, so the ``result`` event
        carries its row id, then pushed. Blocking (SQLite)."""
        doc["session_id"] = self._session(doc["stream"])
        try:
            self.store.add_result_sync(doc)
        except Exception:
            self._fail("clip")
            clip_log.exception(
                "storing a result failed", extra={"fields": {"stream": doc["stream"]}}
            )
        self._broadcast(Event("result", doc["stream"], doc))
        self._done("clip", origin, doc)
        clip_log.info(
            "clip result",
            extra={
                "fields": {
                    "stream": doc["stream"],
                    "id": doc.get("id"),
                    "provider": doc.get("provider"),
                    "inference_s": doc.get("inference_duration"),
                    "error": doc.get("error"),
                }
            },
        )
        return doc

    def flow_output(self, doc: dict[str, Any]) -> int:
        """What a flow's ``store`` node keeps (``GET /api/results``, ``source: "flow"``);
        returns its row id. Not pushed: the run's ``flow.node`` event already carries it, and
        a ``result`` event would start the flows that wait for clip results. Blocking."""
        doc["session_id"] = self._session(doc.get("stream"))
        row_id = self.store.add_result_sync(doc)
        self._done("flow_output", "local", doc)
        return row_id

    def alert(self, doc: dict[str, Any]) -> int:
        """A flow's alert: stored, its row id set in ``doc``, pushed as an ``alert`` event;
        returns the row id. Blocking (SQLite)."""
        doc["session_id"] = self._session(doc.get("stream"))
        doc["id"] = self.store.add_alert_sync(doc)
        self._broadcast(Event("alert", doc.get("stream"), doc))
        self._done("alert", "local", doc)
        return int(doc["id"])

    def flow_event(self, type_: str, stream: str | None, data: dict[str, Any]) -> dict[str, Any]:
        """A flow's own event (``broadcast`` node): pushed, not stored. On the event loop only
        (the answer carries the event's ``seq``)."""
        doc = self.bus.publish(Event(type_, stream, data))
        self._done("flow_event", "local", doc)
        return doc

    def counts(self) -> dict[tuple[str, str], int]:
        """Results published, by (kind, origin)."""
        with self._lock:
            return dict(self._counts)

    def failures(self) -> dict[str, int]:
        """Results that could not be stored, by kind (they were still pushed)."""
        with self._lock:
            return dict(self._failed)

    def _session(self, stream: str | None) -> str | None:
        session = None if not stream else self.sessions.resolve(stream)
        return None if session is None else session.session_id

    def _broadcast(self, event: Event) -> None:
        try:
            on_loop = asyncio.get_running_loop() is self._loop or self._loop is None
        except RuntimeError:  # a thread without a loop
            on_loop = False
        if on_loop:
            self.bus.publish(event)
        else:
            self.bus.publish_threadsafe(event)

    def _done(self, kind: Kind, origin: str, doc: dict[str, Any]) -> None:
        with self._lock:
            self._counts[(kind, origin)] += 1
        for listener in self._listeners:
            try:
                listener(kind, origin, doc)
            except Exception:  # a listener's bug must not cost the result its way out
                log.exception("result listener failed", extra={"fields": {"kind": kind}})

    def _fail(self, kind: Kind) -> None:
        with self._lock:
            self._failed[kind] += 1
