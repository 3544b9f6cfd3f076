"""Health, status, running configuration and Prometheus metrics."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vlm_monitor import __version__
from vlm_monitor.api.deps import ServicesDep
from vlm_monitor.services import Services
from vlm_monitor.sources.url import redact_url
from vlm_monitor.stats import percentile

router = APIRouter()
# SQLite (results, events) lives in data_dir: report not ready before its writes fail.
READY_MIN_FREE_MB = 100.0


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/health/ready",
    response_model=None,
    responses={503: {"description": 'not ready: `{"status": "not ready", "reasons": [...]}`'}},
)
async def ready(services: ServicesDep) -> dict[str, str] | JSONResponse:
    """503 while this server cannot do all its work (a stream failed, Redis unreachable, a disk
    too full to write on), so a load balancer or orchestrator routes around it; /health stays
    a liveness check, so nothing restarts a process that is only waiting. Open without a token
    like /health: the reasons name what to look at, the details (errors, addresses, paths) stay
    in /api/status."""
    reasons = [
        f"stream {s['id']} failed" for s in services.streams.statuses() if s["state"] == "failed"
    ]
    reasons += redis_problems(services.bus_status())
    reasons += await asyncio.to_thread(disk_problems, disk_checks(services))  # NFS can hang
    if reasons:
        return JSONResponse({"status": "not ready", "reasons": reasons}, status_code=503)
    return {"status": "ready"}


def redis_problems(bus: dict[str, Any]) -> list[str]:
    if bus.get("kind") != "redis":
        return []
    links = [("bus", bus)]
    if bus.get("analysis_jobs") is not None:
        links.append(("analysis jobs", bus["analysis_jobs"]))
    return [f"redis unreachable ({what})" for what, link in links if not link.get("connected")]


def disk_checks(services: Services) -> list[tuple[str, Path, float]]:
    """(what, directory, MB it needs free): data_dir, and each stream's clip directory at its
    ``clips.min_free_mb``, under which ClipStore refuses to write (its clips are paused)."""
    data_dir = Path(services.config.server.data_dir)
    checks = [("data_dir", data_dir, READY_MIN_FREE_MB)]
    for sid in services.streams.ids():
        clips = services.streams.get(sid).config.clips
        if clips is not None and clips.enabled:
            checks.append((f"stream {sid} clips", data_dir / "clips" / sid, clips.min_free_mb))
    return checks


def disk_problems(checks: list[tuple[str, Path, float]]) -> list[str]:
    problems = []
    for what, path, min_mb in checks:
        while not path.exists() and path != path.parent:  # not made yet: its file system
            path = path.parent
        try:
            free = shutil.disk_usage(path).free / 1e6
        except OSError:
            problems.append(f"{what}: free space unreadable")
            continue
        if free < min_mb:
            problems.append(f"{what}: only {free:.0f} MB free (needs {min_mb:.0f})")
    return problems


@router.get("/api/status")
async def status(services: ServicesDep) -> dict[str, Any]:
    return {
        "version": __version__,
        "uptime_s": round(time.time() - services.started_at, 3),
        "streams": services.streams.statuses(),
        "event_listeners": services.bus.listeners,
        "flows_running": len(services.flows.active),
        "bus": services.bus_status(),
        "jobs": await asyncio.to_thread(services.job_status),
        "threads": threading.active_count(),
        "tasks": len(asyncio.all_tasks()),
    }


@router.get("/api/config")
async def running_config(services: ServicesDep) -> dict[str, Any]:
    """The configuration in force, streams added at runtime included; secrets masked."""
    doc = services.config.model_dump(mode="json", by_alias=True)
    for secret in ("api_token", "viewer_token"):
        if doc["server"].get(secret):
            doc["server"][secret] = "***"
    doc["streams"] = [
        services.streams.get(sid).config.model_dump(mode="json", by_alias=True)
        for sid in services.streams.ids()
    ]
    for stream in doc["streams"]:
        stream["url"] = redact_url(stream["url"])
        if stream.get("whip_token"):
            stream["whip_token"] = "***"
    if doc["webrtc"].get("publish_token"):
        doc["webrtc"]["publish_token"] = "***"
    return doc


class HubCollector(Collector):
    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        streams = self.services.streams
        frames = CounterMetricFamily("vlm_stream_frames", "frames decoded", labels=["stream"])
        errors = CounterMetricFamily("vlm_stream_decode_errors", "decode errors", labels=["stream"])
        reconnects = CounterMetricFamily("vlm_stream_reconnects", "reconnects", labels=["stream"])
        fps = GaugeMetricFamily("vlm_stream_fps", "decoded frames/s", labels=["stream"])
        live = GaugeMetricFamily("vlm_stream_live", "1 when the stream is live", labels=["stream"])
        subs = GaugeMetricFamily("vlm_stream_subscribers", "hub subscribers", labels=["stream"])
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
        for status in streams.statuses():
            sid = status["id"]
            frames.add_metric([sid], status["frames_in"])
            errors.add_metric([sid], status["decode_errors"])
            reconnects.add_metric([sid], status["reconnects"])
            fps.add_metric([sid], status["fps_in"])
            live.add_metric([sid], 1.0 if status["state"] == "live" else 0.0)
            subs.add_metric([sid], status["subscribers"])
            # Summed by subscriber name: ids are per connection and would churn label sets.
            by_name: dict[str, list[int]] = {}
            for sub in self.services.hub.subscriptions(sid):
                totals = by_name.setdefault(sub.name, [0, 0])
                totals[0] += sub.stats.delivered
                totals[1] += sub.stats.dropped
            for name, (n_delivered, n_dropped) in by_name.items():
                delivered.add_metric([sid, name], n_delivered)
                dropped.add_metric([sid, name], n_dropped)
        clip_counts = CounterMetricFamily(
            "vlm_clips", "clip pipeline counters", labels=["stream", "counter"]
        )
        lag = GaugeMetricFamily(
            "vlm_clip_lag_seconds", "clip end -> inference start", labels=["stream"]
        )
        for sid in streams.ids():
            stats = self.services.clips.status(sid)
            if stats is None:
                continue
            for key, value in stats.items():
                if isinstance(value, int):
                    clip_counts.add_metric([sid, key], value)
            lag.add_metric([sid], stats["lag_s"])
        per_min = GaugeMetricFamily(
            "vlm_provider_per_minute",
            "VLM calls and tokens, last 60 s",
            labels=["provider", "what"],
        )
        breaker = GaugeMetricFamily(
            "vlm_provider_circuit_open", "1 while the circuit is open", labels=["provider"]
        )
        for name, st in self.services.providers.status().items():
            per_min.add_metric([name, "calls"], st["calls_per_min"])
            per_min.add_metric([name, "tokens"], st["tokens_per_min"])
            breaker.add_metric([name], 1.0 if st["circuit_open"] else 0.0)
        yield from (clip_counts, lag, per_min, breaker)
        yield from self._analyzers()
        yield from self._realtime()
        yield from self._bus()
        refused = CounterMetricFamily(
            "vlm_http_refused", "requests refused by auth and limits", labels=["status"]
        )
        for code, count in sorted(self.services.refused.items()):
            refused.add_metric([code], count)
        yield refused
        listeners = GaugeMetricFamily("vlm_event_listeners", "connected /ws/events clients")
        listeners.add_metric([], self.services.bus.listeners)
        published = CounterMetricFamily("vlm_events_published", "events published")
        published.add_metric([], self.services.bus.published)
        yield from (
            frames,
            errors,
            reconnects,
            fps,
            live,
            subs,
            delivered,
            dropped,
            listeners,
            published,
        )

    def _analyzers(self) -> Iterator[Metric]:
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
        for sid in self.services.streams.ids():
            for name, st in self.services.analyzers.status(sid).items():
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
        for outcome, value in self.services.analysis_writer.status().items():
            if outcome != "queued":
                stored.add_metric([outcome], value)
        emitted = CounterMetricFamily("vlm_socketio_results", "results emitted on Socket.IO")
        emitted.add_metric([], self.services.socketio.emitted)
        yield from (*counters.values(), fps, latency, stored, emitted)

    def _realtime(self) -> Iterator[Metric]:
        metrics = self.services.realtime_metrics
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

    def _bus(self) -> Iterator[Metric]:
        status = self.services.bus_status()
        if status["kind"] != "redis":
            return
        poller = self.services.jobs  # refreshed in the background: a scrape never waits on Redis
        jobs = None if poller is None else poller.latest
        if jobs is not None:
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
        up = GaugeMetricFamily("vlm_bus_connected", "1 while the Redis relay is connected")
        up.add_metric([], 1.0 if status["connected"] else 0.0)
        counts = CounterMetricFamily("vlm_bus_relay", "Redis relay counters", labels=["counter"])
        for key in ("sent", "received", "dropped", "reconnects"):
            counts.add_metric([key], status[key])
        yield from (up, counts)


def metrics_registry(services: Services) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(HubCollector(services))
    return registry


@router.get(
    "/metrics", responses={200: {"content": {"text/plain": {}}, "description": "Prometheus"}}
)
async def metrics(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.metrics
    return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")
