"""Clips and the VLM providers behind them: pipeline counters, lag, budgets and breakers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class ClipCollector(Collector):
    def __init__(
        self,
        streams: Callable[[], list[str]],
        status: Callable[[str], dict[str, Any] | None],
        providers: Callable[[], dict[str, dict[str, Any]]],
    ) -> None:
        """``status(stream)``: the clip processor's statistics, None without clips;
        ``providers()``: each VLM provider's status."""
        self.streams, self.status, self.providers = streams, status, providers

    def collect(self) -> Iterator[Metric]:
        clip_counts = CounterMetricFamily(
            "vlm_clips", "clip pipeline counters", labels=["stream", "counter"]
        )
        lag = GaugeMetricFamily(
            "vlm_clip_lag_seconds", "clip end -> inference start", labels=["stream"]
        )
        skipped = CounterMetricFamily(
            "vlm_clips_skipped",
            "clips that got no VLM call: duplicate (like the last analysed one), still "
            "(under min_motion), disk_full",
            labels=["stream", "reason"],
        )
        for sid in self.streams():
            stats = self.status(sid)
            if stats is None:
                continue
            for key, value in stats.items():
                if isinstance(value, int):
                    clip_counts.add_metric([sid, key], value)
            for reason, value in (stats.get("skipped") or {}).items():
                skipped.add_metric([sid, reason], value)
            lag.add_metric([sid], stats["lag_s"])
        per_min = GaugeMetricFamily(
            "vlm_provider_per_minute",
            "VLM calls and tokens, last 60 s",
            labels=["provider", "what"],
        )
        breaker = GaugeMetricFamily(
            "vlm_provider_circuit_open", "1 while the circuit is open", labels=["provider"]
        )
        for name, st in self.providers().items():
            per_min.add_metric([name, "calls"], st["calls_per_min"])
            per_min.add_metric([name, "tokens"], st["tokens_per_min"])
            breaker.add_metric([name], 1.0 if st["circuit_open"] else 0.0)
        yield from (clip_counts, skipped, lag, per_min, breaker)
