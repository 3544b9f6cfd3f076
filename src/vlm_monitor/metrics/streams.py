"""Streams and the hub: decoded frames, reconnects, and what each consumer got or lost."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vlm_monitor.hub import Subscription


class StreamCollector(Collector):
    def __init__(
        self,
        statuses: Callable[[], list[dict[str, Any]]],
        subscriptions: Callable[[str], Iterable[Subscription]],
    ) -> None:
        self.statuses, self.subscriptions = statuses, subscriptions

    def collect(self) -> Iterator[Metric]:
        labels = ["stream"]
        frames = CounterMetricFamily("vlm_stream_frames", "frames decoded", labels=labels)
        errors = CounterMetricFamily("vlm_stream_decode_errors", "decode errors", labels=labels)
        reconnects = CounterMetricFamily("vlm_stream_reconnects", "reconnects", labels=labels)
        fps = GaugeMetricFamily("vlm_stream_fps", "decoded frames/s", labels=labels)
        live = GaugeMetricFamily("vlm_stream_live", "1 when the stream is live", labels=labels)
        subs = GaugeMetricFamily("vlm_stream_subscribers", "hub subscribers", labels=labels)
        delivered = CounterMetricFamily(
            "vlm_subscription_delivered",
            "frames handed to a consumer",
            labels=["stream", "subscriber"],
        )
        dropped = CounterMetricFamily(
            "vlm_subscription_dropped",
            "frames dropped by the policy",
            labels=["stream", "subscriber"],
        )
        for status in self.statuses():
            sid = status["id"]
            frames.add_metric([sid], status["frames_in"])
            errors.add_metric([sid], status["decode_errors"])
            reconnects.add_metric([sid], status["reconnects"])
            fps.add_metric([sid], status["fps_in"])
            live.add_metric([sid], 1.0 if status["state"] == "live" else 0.0)
            subs.add_metric([sid], status["subscribers"])
            # Summed by subscriber name: ids are per connection and would churn label sets.
            by_name: dict[str, list[int]] = {}
            for sub in self.subscriptions(sid):
                totals = by_name.setdefault(sub.name, [0, 0])
                totals[0] += sub.stats.delivered
                totals[1] += sub.stats.dropped
            for name, (n_delivered, n_dropped) in by_name.items():
                delivered.add_metric([sid, name], n_delivered)
                dropped.add_metric([sid, name], n_dropped)
        yield from (frames, errors, reconnects, fps, live, subs, delivered, dropped)
