"""Events (incidents): changes written, and evidence (snapshots, clips) refused for want of disk
or deleted by the size cap."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CHANGES = ("opened", "updated", "closed", "dropped", "failed")


class EventCollector(Collector):
    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        """``status()``: ``EventService.status``."""
        self.status = status

    def collect(self) -> Iterator[Metric]:
        status = self.status()
        changes = CounterMetricFamily(
            "vlm_incident_changes", "event changes by outcome", labels=["outcome"]
        )
        for key in CHANGES:
            changes.add_metric([key], status[key])
        open_now = GaugeMetricFamily("vlm_incidents_open", "events open now")
        open_now.add_metric([], status["open"])
        refused = CounterMetricFamily(
            "vlm_event_evidence_refused",
            "snapshots and clips not written: free disk under events.min_free_mb",
        )
        refused.add_metric([], status["evidence_refused"])
        pruned = CounterMetricFamily(
            "vlm_event_evidence_pruned", "snapshots and clips deleted by events.max_evidence_mb"
        )
        pruned.add_metric([], status["evidence_pruned"])
        yield from (changes, open_now, refused, pruned)
