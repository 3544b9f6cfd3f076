"""Results: how many of each kind went out, and the latencies people feel, as histograms
(fed by the result sink's listener and by the VLM providers)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

# seconds; analyzers run at 1-15 fps on one machine, workers add a network hop
ANALYZER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# seconds; one VLM request: a local model in tens of ms, a hosted one in seconds
VLM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
# seconds; a clip's last frame -> its result out: queueing, the VLM call, retries
CLIP_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class ResultCollector(Collector):
    """Counters of the result sink, and the latency histograms."""

    def __init__(
        self,
        counts: Callable[[], dict[tuple[str, str], int]],
        failures: Callable[[], dict[str, int]],
    ) -> None:
        """``counts()``: results published by (kind, origin); ``failures()``: results that
        could not be stored, by kind."""
        self.counts, self.failures = counts, failures
        # Not registered anywhere: this collector yields them, so each server has its own.
        self.analyzer_latency = Histogram(
            "vlm_analyzer_result_latency_seconds",
            "frame decoded -> analyzer result published",
            ["analyzer", "origin"],
            buckets=ANALYZER_BUCKETS,
            registry=None,
        )
        self.vlm_call = Histogram(
            "vlm_provider_call_seconds",
            "one VLM request (each retry is a request)",
            ["provider", "outcome"],
            buckets=VLM_BUCKETS,
            registry=None,
        )
        self.clip_lag = Histogram(
            "vlm_clip_result_lag_seconds",
            "last frame of a clip -> its result published (errors included)",
            buckets=CLIP_BUCKETS,
            registry=None,
        )

    def on_result(self, kind: str, origin: str, doc: dict[str, Any]) -> None:
        """The result sink's listener; any thread."""
        if kind == "analysis":
            self.analyzer_latency.labels(doc["analyzer"], origin).observe(doc["latency_s"])
        elif kind == "clip":
            end = (doc.get("video_info") or {}).get("end_timestamp") or 0.0
            if end > 0:
                self.clip_lag.observe(max(0.0, time.time() - end))

    def on_vlm_call(self, provider: str, seconds: float, ok: bool) -> None:
        """A provider's listener; any thread."""
        self.vlm_call.labels(provider, "ok" if ok else "error").observe(seconds)

    def collect(self) -> Iterator[Metric]:
        published = CounterMetricFamily(
            "vlm_results", "results published, by kind and origin", labels=["kind", "origin"]
        )
        for (kind, origin), count in sorted(self.counts().items()):
            published.add_metric([kind, origin], count)
        unstored = CounterMetricFamily(
            "vlm_results_unstored", "results pushed but not stored", labels=["kind"]
        )
        for kind, count in sorted(self.failures().items()):
            unstored.add_metric([kind], count)
        yield from (published, unstored)
        for histogram in (self.analyzer_latency, self.vlm_call, self.clip_lag):
            yield from histogram.collect()
