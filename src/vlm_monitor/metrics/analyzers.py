"""Analyzers: frames analysed, results, failures, what a busy analyzer skipped, and SQLite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class AnalyzerCollector(Collector):
    def __init__(
        self,
        streams: Callable[[], list[str]],
        status: Callable[[str], dict[str, dict[str, Any]]],
        storage: Callable[[], dict[str, int]],
    ) -> None:
        """``status(stream)``: per analyzer; ``storage()``: the analysis writer's counters."""
        self.streams, self.status, self.storage = streams, status, storage

    def collect(self) -> Iterator[Metric]:
        labels = ["stream", "analyzer"]
        counters = {
            key: CounterMetricFamily(f"vlm_analyzer_{key}", help_text, labels=labels)
            for key, help_text in (
                ("frames", "frames analysed"),
                ("results", "results published"),
                ("errors", "analysis failures"),
                ("dropped", "frames skipped because the analyzer was busy"),
            )
        }
        fps = GaugeMetricFamily("vlm_analyzer_fps", "frames analysed per second", labels=labels)
        latency = GaugeMetricFamily(
            "vlm_analyzer_latency_seconds",
            "frame decoded -> result, recent window",
            labels=[*labels, "quantile"],
        )
        for sid in self.streams():
            for name, st in self.status(sid).items():
                for key, family in counters.items():
                    family.add_metric([sid, name], st[key])
                fps.add_metric([sid, name], st["fps"])
                for q in ("50", "99"):
                    value = st[f"latency_p{q}_s"]
                    if value is not None:
                        latency.add_metric([sid, name, str(int(q) / 100)], value)
        stored = CounterMetricFamily(
            "vlm_analysis_storage", "analyzer results to SQLite", labels=["outcome"]
        )
        for outcome, value in self.storage().items():
            if outcome != "queued":
                stored.add_metric([outcome], value)
        yield from (*counters.values(), fps, latency, stored)
