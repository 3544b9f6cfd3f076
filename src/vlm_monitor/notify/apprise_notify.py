"""Notifications of events through Apprise (ntfy, Telegram, e-mail, Slack, webhooks, ...), the
snapshot attached.

Each target has its own bounded queue and sender task: a slow or dead service delays only its
own notifications, never the events service, MQTT or another target. Apprise blocks (HTTP,
SMTP), so each send runs in a thread. A notification is retried with back-off; one that still
fails, one over the queue, and one inside a stream and kind's cooldown are counted, not kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import apprise

from vlm_monitor.config_events import NotifyTarget
from vlm_monitor.types import SEVERITIES

log = logging.getLogger("vlm_monitor.notify")
QUEUE_NOTIFICATIONS = 100  # per target
SEND_TIMEOUT_S = 30.0
NOTIFY_TYPE = {"info": "info", "warning": "warning", "critical": "failure"}


def wants(target: NotifyTarget, action: str, doc: dict[str, Any]) -> bool:
    return (
        action in target.on
        and (not target.kinds or doc["kind"] in target.kinds)
        and (not target.streams or doc["stream"] in target.streams)
        and SEVERITIES.index(doc["severity"]) >= SEVERITIES.index(target.min_severity)
    )


def message(action: str, doc: dict[str, Any]) -> tuple[str, str]:
    """(title, body) a person reads on a phone: what, where, since when."""
    prefix = {"open": "", "update": "Update: ", "close": "Over: "}[action]
    title = f"{prefix}{doc['title']} on {doc['stream']}"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(doc["started_at"]))
    detail = f"{doc['kind']}, {doc['severity']}, since {started} (event {doc['id']})"
    body = f"{doc['summary']}\n\n{detail}"
    return title, body


class _Sender:
    def __init__(self, target: NotifyTarget, index: int) -> None:
        self.target, self.name = target, f"notify[{index}]"
        self.apprise = apprise.Apprise()
        self.apprise.add(target.url)
        self.queue: asyncio.Queue[tuple[str, dict[str, Any], Path | None]] = asyncio.Queue(
            QUEUE_NOTIFICATIONS
        )
        self.last: dict[tuple[str, str], float] = {}  # (stream, kind) -> monotonic seconds
        self.counts: Counter[str] = Counter()

    def offer(self, action: str, doc: dict[str, Any], snapshot: Path | None) -> None:
        if not wants(self.target, action, doc):
            return
        key, now = (doc["stream"], doc["kind"]), time.monotonic()
        # The cooldown spaces new incidents; the close of one that was announced still goes.
        if action == "open" and now - self.last.get(key, float("-inf")) < self.target.cooldown_s:
            self.counts["suppressed"] += 1
            return
        if action == "open":
            self.last[key] = now
        try:
            self.queue.put_nowait((action, doc, snapshot))
        except asyncio.QueueFull:
            self.counts["dropped"] += 1

    async def run(self) -> None:
        while True:
            action, doc, snapshot = await self.queue.get()
            try:
                await self._deliver(action, doc, snapshot)
            finally:
                self.queue.task_done()

    async def _deliver(self, action: str, doc: dict[str, Any], snapshot: Path | None) -> None:
        title, body = message(action, doc)
        delay = self.target.retry_s
        for attempt in range(1, self.target.attempts + 1):
            try:
                ok = await asyncio.wait_for(
                    asyncio.to_thread(self._send, title, body, doc["severity"], snapshot),
                    SEND_TIMEOUT_S,
                )
            except Exception as exc:  # a broken plug-in or a hung service: counted, retried
                log.warning("notification error", extra={"fields": {"error": repr(exc)}})
                ok = False
            if ok:
                self.counts["sent"] += 1
                return
            self.counts["retries" if attempt < self.target.attempts else "failed"] += 1
            if attempt < self.target.attempts:
                await asyncio.sleep(delay)
                delay *= 2
        log.warning(
            "notification failed",
            extra={"fields": {"target": self.name, "event": doc["id"], "kind": doc["kind"]}},
        )

    def _send(self, title: str, body: str, severity: str, snapshot: Path | None) -> bool:
        attach = str(snapshot) if snapshot is not None and snapshot.exists() else None
        return bool(
            self.apprise.notify(
                body=body, title=title, notify_type=NOTIFY_TYPE[severity], attach=attach
            )
        )


class Notifier:
    """``on_event`` is an events-service subscriber (on the event loop)."""

    def __init__(self, targets: list[NotifyTarget], snapshot_path: Any) -> None:
        self.senders = [_Sender(t, i) for i, t in enumerate(targets)]
        self.snapshot_path = snapshot_path  # event id -> Path of its JPEG
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(s.run()) for s in self.senders]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def on_event(self, action: str, doc: dict[str, Any], jpeg: bytes | None) -> None:
        snapshot = self.snapshot_path(doc["id"]) if doc.get("snapshot_url") else None
        for sender in self.senders:
            sender.offer(action, doc, snapshot)

    def status(self) -> list[dict[str, Any]]:
        return [{"target": s.name, "queued": s.queue.qsize(), **s.counts} for s in self.senders]
