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
        overload: Callable[[], dict[str, Any]],
        degraded: Callable[[str], dict[str, Any] | None],
    ) -> None:
        """``status(stream)``: per analyzer; ``storage()``: the analysis writer's counters;
        ``overload()``: the load governor's status; ``degraded(stream)``: why a stream's
        analyzers run below their rates, or None."""
        self.streams, self.status, self.storage = streams, status, storage
        self.overload, self.degraded = overload, degraded

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
        running = GaugeMetricFamily(
            "vlm_analyzer_fps_running",
            "rate asked of the hub, below target when shed",
            labels=labels,
        )
        degraded = GaugeMetricFamily(
            "vlm_stream_degraded",
            "1: the stream's analyzers run below their rates",
            labels=["stream", "reason"],
        )
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
                if st.get("fps_running") is not None:
                    running.add_metric([sid, name], st["fps_running"])
                for q in ("50", "99"):
                    value = st[f"latency_p{q}_s"]
                    if value is not None:
                        latency.add_metric([sid, name, str(int(q) / 100)], value)
            why = self.degraded(sid)
            if why is not None:
                degraded.add_metric([sid, why["reason"]], 1)
        stored = CounterMetricFamily(
            "vlm_analysis_storage", "analyzer results to SQLite", labels=["outcome"]
        )
        for outcome, value in self.storage().items():
            if outcome != "queued":
                stored.add_metric([outcome], value)
        yield from (*counters.values(), fps, running, degraded, latency, stored)
        yield from self._overload()

    def _overload(self) -> Iterator[Metric]:
        load = self.overload()
        for key, help_text in (
            ("share", "share of their rates the analyzers run at (1 = full; < 1: overload)"),
            ("busy", "analyzer threads' (or processes') busy share over the last period"),
            ("cpu", "share of the cores the server and its analyzer processes used"),
            ("late", "share of wanted frames analyzers lost over the last period"),
        ):
            gauge = GaugeMetricFamily(f"vlm_analysis_rate_{key}", help_text)
            gauge.add_metric([], load[key])
            yield gauge
        refused = CounterMetricFamily(
            "vlm_analysis_refused_streams", "new streams refused: the machine at capacity"
        )
        refused.add_metric([], load["refused"])
        yield refused
