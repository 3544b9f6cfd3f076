"""Publishes incidents, stream states, snapshots and analyzer readings to an MQTT broker, with
Home Assistant discovery.

The broker may be away at start or drop mid-run: the latest value of each retained topic is
kept (and sent again after every reconnect, so a broker restarted without persistence is
repopulated), and event messages wait in a bounded queue (oldest dropped and counted) until
the connection is back. Nothing here blocks the event loop or a producer: a slow or absent
broker costs memory bounded by ``queue_max`` and nothing else. Incidents are in SQLite anyway.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import ssl
import threading
from typing import Any

import aiomqtt

from vlm_monitor.config_events import MqttConfig, mqtt_address
from vlm_monitor.notify.mqtt_topics import BINARY_KINDS, Topics

log = logging.getLogger("vlm_monitor.mqtt")
RETRY_MIN_S, RETRY_MAX_S = 0.5, 15.0  # reconnect back-off, seconds


class MqttBridge:
    """Entry points are thread-safe (readings come from analyzer threads)."""

    def __init__(self, config: MqttConfig, streams: list[str]) -> None:
        self.config = config
        self.host, self.port, self.tls = mqtt_address(config.url)
        self.topics = Topics(config.topic_prefix, config.discovery_prefix)
        self.password = os.environ.get(config.password_env) if config.password_env else None
        self._lock = threading.Lock()
        self._retained: dict[str, bytes] = {}  # topic -> latest payload, resent on reconnect
        self._dirty: dict[str, None] = {}  # retained topics not yet sent (ordered)
        self._queue: collections.deque[tuple[str, bytes]] = collections.deque()
        self._streams: set[str] = set()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.counts = {"sent": 0, "dropped": 0, "reconnects": 0}
        self.last_error: str | None = None
        for stream in streams:
            self._announce(stream)

    def _announce(self, stream: str) -> None:
        """Discovery configs and OFF states, once per stream (caller holds no lock)."""
        with self._lock:
            if stream in self._streams:
                return
            self._streams.add(stream)
        for topic, payload in self.topics.discovery_configs(stream).items():
            self._set_retained(topic, payload)
        for kind in BINARY_KINDS:
            self._set_retained(self.topics.event_kind(stream, kind), b"OFF")

    def _set_retained(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self._retained[topic] = payload
            self._dirty[topic] = None
        self._notify()

    def _enqueue(self, topic: str, payload: bytes) -> None:
        with self._lock:
            if len(self._queue) >= self.config.queue_max:
                self._queue.popleft()
                self.counts["dropped"] += 1
            self._queue.append((topic, payload))
        self._notify()

    def _notify(self) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._wake.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed during shutdown
                loop.call_soon_threadsafe(self._wake.set)

    # Subscribers: incidents, results, stream states.

    async def on_event(self, action: str, doc: dict[str, Any], jpeg: bytes | None) -> None:
        stream = doc["stream"]
        self._announce(stream)
        self._enqueue(self.topics.events(stream), json.dumps({"action": action, **doc}).encode())
        if doc["kind"] in BINARY_KINDS:
            on = b"ON" if doc["state"] == "open" else b"OFF"
            self._set_retained(self.topics.event_kind(stream, doc["kind"]), on)
        if jpeg is not None:
            self._set_retained(self.topics.snapshot(stream), jpeg)

    def on_result(self, kind: str, origin: str, doc: dict[str, Any]) -> None:
        """A ``ResultSink`` listener: an analyzer's latest reading, retained (readings of one
        topic that arrive while the broker is slow replace each other)."""
        if kind != "analysis" or not doc.get("stream"):
            return
        self._announce(doc["stream"])
        self._set_retained(
            self.topics.analyzer(doc["stream"], str(doc.get("analyzer"))),
            json.dumps(doc, default=str).encode(),
        )

    def on_stream_state(self, stream: str, status: dict[str, Any]) -> None:
        self._announce(stream)
        body = {k: v for k, v in status.items() if k not in ("seq", "type")}
        self._set_retained(self.topics.state(stream), json.dumps(body, default=str).encode())

    # The connection.

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task, self._loop = None, None

    def status(self) -> dict[str, Any]:
        with self._lock:
            queued = len(self._queue) + len(self._dirty)
        return {
            "connected": self.connected,
            "queued": queued,
            **self.counts,
            "last_error": self.last_error,
        }

    def _client(self) -> aiomqtt.Client:
        will = aiomqtt.Will(self.topics.availability, b"offline", qos=1, retain=True)
        return aiomqtt.Client(
            self.host,
            self.port,
            username=self.config.username,
            password=self.password,
            will=will,
            tls_context=ssl.create_default_context() if self.tls else None,
            timeout=10,
        )

    async def _run(self) -> None:
        delay = RETRY_MIN_S
        while True:
            try:
                async with self._client() as client:
                    self.connected, delay = True, RETRY_MIN_S
                    log.info("mqtt connected", extra={"fields": {"broker": self.config.url}})
                    try:
                        await self._session(client)
                    finally:
                        # Said while still connected: a clean stop leaves no stale "online".
                        with contextlib.suppress(aiomqtt.MqttError, asyncio.CancelledError):
                            await asyncio.wait_for(
                                client.publish(
                                    self.topics.availability, b"offline", qos=1, retain=True
                                ),
                                2,
                            )
            except aiomqtt.MqttError as exc:
                self.last_error = str(exc)
                log.warning("mqtt unavailable", extra={"fields": {"error": str(exc)}})
            finally:
                if self.connected:
                    self.counts["reconnects"] += 1
                self.connected = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    async def _session(self, client: aiomqtt.Client) -> None:
        await client.publish(self.topics.availability, b"online", qos=1, retain=True)
        with self._lock:
            self._dirty = dict.fromkeys(self._retained)  # the broker may have forgotten them
        # Nothing is subscribed: the message iterator only ends, with MqttError, when the
        # connection drops, which an idle publisher would otherwise notice only when it next
        # has something to say.
        watch = asyncio.create_task(_until_disconnected(client))
        try:
            while True:
                self._wake.clear()
                while (item := self._next()) is not None:
                    topic, payload, retain = item
                    try:
                        await client.publish(topic, payload, qos=1, retain=retain)
                    except aiomqtt.MqttError:
                        self._requeue(topic, payload, retain)
                        raise
                    self.counts["sent"] += 1
                wake = asyncio.create_task(self._wake.wait())
                await asyncio.wait({wake, watch}, return_when=asyncio.FIRST_COMPLETED)
                wake.cancel()
                if watch.done():
                    watch.result()
        finally:
            watch.cancel()

    def _next(self) -> tuple[str, bytes, bool] | None:
        with self._lock:
            if self._dirty:
                topic = next(iter(self._dirty))
                del self._dirty[topic]
                return topic, self._retained[topic], True
            if self._queue:
                topic, payload = self._queue.popleft()
                return topic, payload, False
        return None

    def _requeue(self, topic: str, payload: bytes, retain: bool) -> None:
        with self._lock:
            if retain:
                self._dirty[topic] = None
            else:
                self._queue.appendleft((topic, payload))


async def _until_disconnected(client: aiomqtt.Client) -> None:
    async for _ in client.messages:
        pass
