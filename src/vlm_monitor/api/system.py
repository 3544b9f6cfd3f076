"""Health, status, running configuration and Prometheus metrics."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from vlm_monitor import __version__
from vlm_monitor.api.deps import ServicesDep
from vlm_monitor.metrics.analyzers import AnalyzerCollector
from vlm_monitor.metrics.broadcast import BroadcastCollector
from vlm_monitor.metrics.clips import ClipCollector
from vlm_monitor.metrics.events import EventCollector
from vlm_monitor.metrics.http import RefusalCollector
from vlm_monitor.metrics.jobs import JobCollector
from vlm_monitor.metrics.realtime import RealtimeCollector
from vlm_monitor.metrics.results import ResultCollector
from vlm_monitor.metrics.streams import StreamCollector
from vlm_monitor.services import Services
from vlm_monitor.sources.url import redact_url

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
        "events": services.events.status(),
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
    for target in doc.get("notify", []):
        target["url"] = "***"  # an Apprise URL holds its service's token or password
    return doc


def metrics_registry(services: Services) -> CollectorRegistry:
    """One collector per domain, each given only what it reads."""
    registry = CollectorRegistry()
    streams = services.streams
    results = ResultCollector(services.results.counts, services.results.failures)
    services.results.listen(results.on_result)
    services.providers.listen(results.on_vlm_call)
    jobs = services.jobs
    collectors: list[Collector] = [
        StreamCollector(streams.statuses, services.hub.subscriptions),
        AnalyzerCollector(
            streams.ids,
            services.analyzers.status,
            services.analysis_writer.status,
            services.analyzers.governor.status,
            services.analyzers.degraded,
        ),
        ClipCollector(streams.ids, services.clips.status, services.provider_status),
        results,
        RealtimeCollector(services.realtime_metrics),
        BroadcastCollector(
            services.bus,
            lambda: services.socketio.emitted,
            lambda: None if services.relay is None else services.relay.status(),
        ),
        JobCollector(lambda: None if jobs is None else jobs.latest),
        EventCollector(services.events.status),
        RefusalCollector(services.refused),
    ]
    for collector in collectors:
        registry.register(collector)
    return registry


@router.get(
    "/metrics", responses={200: {"content": {"text/plain": {}}, "description": "Prometheus"}}
)
async def metrics(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.metrics
    return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")
