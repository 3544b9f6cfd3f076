"""Redis Streams clip-job benchmark: prints one JSON object on stdout (progress on stderr).

A real redis-server on a free port; `vlm-monitor worker --redis-url` processes with the
offline `local` provider; 16 producer threads submit clip jobs (8 frames of 640x360 from the
synthetic scene) through the backend's RedisClipDispatcher, as clip processors do.

- jobs/s with 1, 2 and 4 workers (same job mix) and the scaling ratio vs 1 worker;
- the latency the Redis path adds: dispatcher call vs calling the provider in-process,
  p50/p99, one job at a time;
- analyzer jobs: a backend with 4 face streams (heart rate at 15 fps, emotion at 5 fps),
  analysed in-process (`analysis.dispatch: local`) and by 1 and 2 workers through Redis:
  frames/s analysed and frame-to-result latency p50/p99 as the backend reports them.

Run: .venv/bin/python bench/scale.py [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis

from vlm_monitor.camera.scene import SyntheticScene
from vlm_monitor.clips.dispatch import RedisClipDispatcher
from vlm_monitor.config import ClipsConfig, VlmProviderConfig
from vlm_monitor.stats import percentile
from vlm_monitor.testing import ServerProcess, free_port, start_job_worker, wait_until
from vlm_monitor.vlm.base import VlmRequest
from vlm_monitor.vlm.registry import ProviderSet

CHANNEL = "vlm-monitor"


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def request() -> VlmRequest:
    scene = SyntheticScene(640, 360)
    frames = [scene.render(i * 10, 1000 + i) for i in range(8)]
    return VlmRequest("bench", "Describe.", frames, [1000.0 + i for i in range(8)])


def throughput(url: str, n_workers: int, seconds: float, tmp: Path) -> float:
    config = tmp / "worker.json"
    config.write_text(json.dumps({"vlm": {"providers": [{"name": "local", "kind": "local"}]}}))
    workers = [
        start_job_worker(url, config, f"w{i}", tmp / f"w{n_workers}-{i}.out", "--jobs", "clip")
        for i in range(n_workers)
    ]
    clips = ClipsConfig(provider="local", dispatch="redis", deadline_s=60, max_backlog=1000)
    dispatch = RedisClipDispatcher(url, CHANNEL, clips, clips.max_backlog)
    job = request()
    done = 0
    lock = threading.Lock()
    time.sleep(2)  # the workers start
    deadline = time.monotonic() + seconds

    def produce() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            dispatch(job)
            with lock:
                done += 1

    t0 = time.monotonic()
    threads = [threading.Thread(target=produce) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rate = done / (time.monotonic() - t0)
    for w in workers:
        w.stop()
    return round(rate, 1)


def added_latency(url: str, tmp: Path, n: int = 40) -> dict:
    config = tmp / "worker.json"
    worker = start_job_worker(url, config, "lat", tmp / "lat.out", "--jobs", "clip")
    clips = ClipsConfig(provider="local", dispatch="redis", deadline_s=60)
    dispatch = RedisClipDispatcher(url, CHANNEL, clips, 1000)
    local = ProviderSet([VlmProviderConfig(name="local", kind="local")]).analyzer(clips)
    job = request()
    time.sleep(2)
    timings: dict[str, list[float]] = {"local": [], "redis": []}
    for _ in range(n):
        for name, call in (("local", local), ("redis", dispatch)):
            t0 = time.perf_counter()
            call(job)
            timings[name].append((time.perf_counter() - t0) * 1000)
    worker.stop()
    out = {
        k: {"p50": percentile(v, 50, 1), "p99": percentile(v, 99, 1)} for k, v in timings.items()
    }
    out["added_ms_p50"] = round((out["redis"]["p50"] or 0) - (out["local"]["p50"] or 0), 1)
    return out


def analysis(url: str, tmp: Path, n_workers: int, seconds: float) -> dict:
    """n_workers 0: in-process analyzers."""
    streams = [
        {"id": f"face{i}", "url": f"synthetic://?scene=face&bpm={66 + 6 * i}&fps=15&size=640x360",
         "analyzers": [{"name": "heart_rate", "fps": 15}, {"name": "emotion", "fps": 5}]}
        for i in range(4)
    ]  # fmt: skip
    dispatch = "redis" if n_workers else "local"
    config = {"bus": {"kind": "redis", "url": url, "channel": f"bench-{n_workers}"},
              "analysis": {"dispatch": dispatch}, "streams": streams}  # fmt: skip
    workdir = tmp / f"analysis-{n_workers}"
    workdir.mkdir()
    server = ServerProcess(workdir, config)
    (workdir / "w.json").write_text(json.dumps({"bus": {"channel": f"bench-{n_workers}"}}))
    workers = [
        start_job_worker(
            url, workdir / "w.json", f"a{i}", workdir / f"a{i}.out", "--jobs", "analyze"
        )
        for i in range(n_workers)
    ]
    try:
        time.sleep(10)  # warm-up: leases taken, the backlog of the first seconds analysed
        with server.client() as c:
            before = c.get("/api/streams").json()
        t0 = time.time()
        time.sleep(seconds)
        with server.client() as c:
            after = c.get("/api/streams").json()
            stored = {
                (s["id"], name): c.get(
                    "/api/analyses", params={"stream": s["id"], "analyzer": name, "limit": 1000}
                ).json()
                for s in streams
                for name in ("heart_rate", "emotion")
            }
    finally:
        for w in workers:
            w.stop()
        server.stop()
    out: dict = {}
    for name in ("heart_rate", "emotion"):
        frames = sum(
            a["analyzers"][name]["frames"] - b["analyzers"][name]["frames"]
            for a, b in zip(after, before, strict=True)
        )
        # Latency of the results of frames captured in the window, from SQLite.
        lat = [1000 * r["latency_s"] for (_, n), rows in stored.items() if n == name
               for r in rows if t0 <= r["video_timestamp"] <= t0 + seconds]  # fmt: skip
        dropped = sum(
            a["analyzers"][name]["dropped"] - b["analyzers"][name]["dropped"]
            for a, b in zip(after, before, strict=True)
        )
        out[name] = {"frames_per_s": round(frames / seconds, 1),
                     "latency_p50_ms": percentile(lat, 50, 1),
                     "latency_p99_ms": percentile(lat, 99, 1), "dropped": dropped}  # fmt: skip
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("redis-server missing: run make test (scripts/install-os-deps.sh)")
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        proc = subprocess.Popen(
            [server, "--port", str(port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_until(lambda: redis.Redis.from_url(url).ping(), 10)
            report: dict = {"jobs_per_s": {}}
            for n in (1, 2, 4):
                report["jobs_per_s"][str(n)] = throughput(url, n, args.seconds, tmp)
                log(f"{n} worker(s): {report['jobs_per_s'][str(n)]} jobs/s")
            base = report["jobs_per_s"]["1"]
            report["scaling_vs_1"] = {
                k: round(v / base, 2) for k, v in report["jobs_per_s"].items()
            }
            report["latency_ms"] = added_latency(url, tmp)
            log(f"latency: {report['latency_ms']}")
            report["analysis"] = {}
            for n, label in ((0, "local"), (1, "redis_1_worker"), (2, "redis_2_workers")):
                report["analysis"][label] = analysis(url, tmp, n, args.seconds)
                log(f"analysis {label}: {report['analysis'][label]}")
        finally:
            proc.terminate()
            proc.wait(5)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
