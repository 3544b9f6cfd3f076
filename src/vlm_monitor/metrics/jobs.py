"""Jobs in Redis (bus kind redis): queues, dead letters and each worker's heartbeat."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class JobCollector(Collector):
    def __init__(self, latest: Callable[[], dict[str, Any] | None]) -> None:
        """``latest()``: the job status last read from Redis, None before the first read;
        never a call to Redis (a scrape must not wait on it)."""
        self.latest = latest

    def collect(self) -> Iterator[Metric]:
        jobs = self.latest()
        if jobs is None:
            return
        queue = GaugeMetricFamily(
            "vlm_jobs", "jobs in Redis per queue (clip, or the analysed stream)",
            labels=["queue", "state"],
        )  # fmt: skip
        oldest = GaugeMetricFamily(
            "vlm_jobs_oldest_seconds", "age of the oldest job still queued", labels=["queue"]
        )
        queue.add_metric(["dead", "queued"], jobs["dead"])
        queues = {"clip": jobs, **{f"analyze:{s}": q for s, q in jobs["analysis"].items()}}
        for name, q in queues.items():
            for state in ("queued", "lag", "in_work"):
                queue.add_metric([name, state], q[state])
            if q["oldest_s"] is not None:
                oldest.add_metric([name], q["oldest_s"])
        beat = GaugeMetricFamily(
            "vlm_worker_heartbeat_age_seconds", "since each worker's last heartbeat",
            labels=["worker"],
        )  # fmt: skip
        done = CounterMetricFamily(
            "vlm_worker_jobs", "jobs per worker", labels=["worker", "outcome"]
        )
        now = time.time()
        for name, w in jobs["workers"].items():
            beat.add_metric([name], round(now - w["last_heartbeat"], 3))
            for outcome in ("done", "failed", "dead", "frames", "analysis_errors"):
                done.add_metric([name, outcome], w.get(outcome, 0))
        yield from (queue, oldest, beat, done)
