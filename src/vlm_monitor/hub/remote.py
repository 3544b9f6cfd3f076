"""Subscriptions of out-of-process consumers (``/internal/video/subscribe``).

A remote subscription is a record (stream, name, frame rate) created over HTTP; frames flow
while its push WebSocket is connected, through an ordinary hub subscription with the
``latest`` policy, so a slow worker gets the newest frame, never a backlog.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RemoteSubscription:
    id: str
    stream: str
    name: str
    frame_rate: float | None
    created_at: float = field(default_factory=time.time)
    connected: bool = False
    delivered: int = 0
    last_seq: int = 0

    def status(self) -> dict[str, Any]:
        return {
            "subscription_id": self.id,
            "stream": self.stream,
            "name": self.name,
            "frame_rate": self.frame_rate,
            "connected": self.connected,
            "delivered": self.delivered,
            "last_seq": self.last_seq,
            "created_at": self.created_at,
        }


class RemoteSubscriptions:
    MAX = 1024  # a bound on records; the oldest unconnected one is evicted beyond it

    def __init__(self) -> None:
        self._subs: dict[str, RemoteSubscription] = {}

    def create(self, stream: str, name: str, frame_rate: float | None) -> RemoteSubscription:
        if len(self._subs) >= self.MAX:
            idle = [s for s in self._subs.values() if not s.connected]
            if idle:
                del self._subs[min(idle, key=lambda s: s.created_at).id]
        sub = RemoteSubscription(uuid.uuid4().hex[:16], stream, name, frame_rate)
        self._subs[sub.id] = sub
        return sub

    def get(self, sub_id: str) -> RemoteSubscription | None:
        return self._subs.get(sub_id)

    def remove(self, sub_id: str) -> RemoteSubscription | None:
        return self._subs.pop(sub_id, None)

    def for_stream(self, stream: str) -> list[RemoteSubscription]:
        return [s for s in self._subs.values() if s.stream == stream]

    def all(self) -> list[RemoteSubscription]:
        return list(self._subs.values())
