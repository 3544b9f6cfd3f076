"""Realtime (``/ws/video``) sessions: how many, their counters, and response latency."""

from __future__ import annotations

from collections.abc import Iterator, Sequence, Sized
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vlm_monitor.stats import percentile


class RealtimeFigures(Protocol):
    """What the collector reads of ``realtime.metrics.RealtimeMetrics``."""

    @property
    def active(self) -> Sized: ...
    @property
    def sessions_total(self) -> int: ...
    @property
    def onset_s(self) -> Sequence[float]: ...
    @property
    def first_delta_s(self) -> Sequence[float]: ...
    def totals(self) -> dict[str, int]: ...


class RealtimeCollector(Collector):
    def __init__(self, metrics: RealtimeFigures) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        metrics = self.metrics
        active = GaugeMetricFamily("vlm_realtime_sessions", "open /ws/video sessions")
        active.add_metric([], len(metrics.active))
        opened = CounterMetricFamily("vlm_realtime_sessions_opened", "sessions opened")
        opened.add_metric([], metrics.sessions_total)
        counts = CounterMetricFamily(
            "vlm_realtime", "realtime session counters (all sessions)", labels=["counter"]
        )
        for key, value in metrics.totals().items():
            counts.add_metric([key], value)
        latency = GaugeMetricFamily(
            "vlm_realtime_latency_seconds",
            "speech onset -> speech.started, speech end -> first delta (recent)",
            labels=["what", "quantile"],
        )
        for what, values in (("onset", metrics.onset_s), ("first_delta", metrics.first_delta_s)):
            for q in (50, 99):
                pct = percentile(values, q)
                if pct is not None:
                    latency.add_metric([what, str(q / 100)], pct)
        yield from (active, opened, counts, latency)
