"""Multi-node fan-out of the event bus through Redis pub/sub (``bus: {kind: redis}``).

Every event published on this node is also PUBLISHed to one Redis channel; every node
subscribes and re-publishes the other nodes' events on its own bus (marked with their
``node``), so a ``/ws/events`` client on node B sees what node A produced. Redis being down
never blocks or breaks the local bus: outgoing events wait in a bounded queue (oldest dropped,
counted) and the relay reconnects with back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from vlm_monitor.broadcast.bus import EventBus
from vlm_monitor.broadcast.redis_link import RedisLink
from vlm_monitor.types import Event

OUTBOX = 10_000


class RedisRelay(RedisLink):
    def __init__(self, bus: EventBus, url: str, channel: str, node_id: str) -> None:
        super().__init__(url, "redis relay")
        self.bus, self.channel, self.node_id = bus, channel, node_id
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(OUTBOX)
        self.sent = self.received = self.dropped = 0

    def forward(self, doc: dict[str, Any]) -> None:
        """Bus forwarder: called on the loop for each local event; never blocks."""
        if self._outbox.full():
            self._outbox.get_nowait()
            self.dropped += 1
        self._outbox.put_nowait(doc)

    async def start(self) -> None:
        self.bus.forwarders.append(self.forward)
        self.run(self._send, "relay-send")
        self.run(self._receive, "relay-receive")

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.bus.forwarders.remove(self.forward)
        await self.stop_tasks()

    async def _send(self, client: aioredis.Redis) -> None:
        await client.ping()
        while True:
            doc = await self._outbox.get()
            try:
                await client.publish(self.channel, json.dumps({"node": self.node_id, "event": doc}))
            except (RedisError, OSError):
                # Keep the event for the next connection (at the front would reorder; the
                # back is fine for a broadcast: late beats lost).
                self.forward(doc)
                raise
            self.sent += 1

    async def _receive(self, client: aioredis.Redis) -> None:
        pubsub = client.pubsub()
        await pubsub.subscribe(self.channel)
        self.up()
        try:
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                if message is None:
                    await client.ping()  # notice a dead server while idle
                    continue
                self._deliver(message["data"])
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _deliver(self, raw: bytes) -> None:
        try:
            envelope = json.loads(raw)
            origin, doc = envelope["node"], dict(envelope["event"])
        except (ValueError, KeyError, TypeError):
            return
        if origin == self.node_id:
            return  # our own, already on the local bus
        self.received += 1
        doc.pop("seq", None)
        kind, stream, ts = doc.pop("type"), doc.pop("stream", None), doc.pop("ts", None)
        event = Event(kind, stream, doc)
        if ts is not None:
            event.ts = ts
        self.bus.publish(event, origin=origin)

    def status(self) -> dict[str, Any]:
        return {
            "kind": "redis",
            "node": self.node_id,
            "connected": self.connected,
            "sent": self.sent,
            "received": self.received,
            "dropped": self.dropped,
            "queued": self._outbox.qsize(),
            "reconnects": self.reconnects,
            "last_error": self.last_error,
        }
