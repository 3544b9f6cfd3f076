"""HTTP: requests the guard and the limits refused, by status."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector


class RefusalCollector(Collector):
    def __init__(self, refused: Mapping[str, int]) -> None:
        """``refused``: the guard's live counter, by status code."""
        self.refused = refused

    def collect(self) -> Iterator[Metric]:
        refused = CounterMetricFamily(
            "vlm_http_refused", "requests refused by auth and limits", labels=["status"]
        )
        for code, count in sorted(self.refused.items()):
            refused.add_metric([code], count)
        yield refused
