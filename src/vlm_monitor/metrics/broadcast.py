"""Broadcast: event listeners, events published, Socket.IO emits and the Redis relay."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vlm_monitor.broadcast.bus import EventBus


class BroadcastCollector(Collector):
    def __init__(
        self,
        bus: EventBus,
        socketio_emitted: Callable[[], int],
        relay: Callable[[], dict[str, Any] | None],
    ) -> None:
        """``relay()``: the Redis relay's status, None on a single node."""
        self.bus, self.socketio_emitted, self.relay = bus, socketio_emitted, relay

    def collect(self) -> Iterator[Metric]:
        listeners = GaugeMetricFamily("vlm_event_listeners", "connected /ws/events clients")
        listeners.add_metric([], self.bus.listeners)
        published = CounterMetricFamily("vlm_events_published", "events published")
        published.add_metric([], self.bus.published)
        emitted = CounterMetricFamily("vlm_socketio_results", "results emitted on Socket.IO")
        emitted.add_metric([], self.socketio_emitted())
        yield from (listeners, published, emitted)
        status = self.relay()
        if status is None:
            return
        up = GaugeMetricFamily("vlm_bus_connected", "1 while the Redis relay is connected")
        up.add_metric([], 1.0 if status["connected"] else 0.0)
        counts = CounterMetricFamily("vlm_bus_relay", "Redis relay counters", labels=["counter"])
        for key in ("sent", "received", "dropped", "reconnects"):
            counts.add_metric([key], status[key])
        yield from (up, counts)
