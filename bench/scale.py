"""Redis Streams clip-job benchmark: prints one JSON object on stdout (progress on stderr).

A real redis-server on a free port; `vlm-monitor worker --redis-url` processes with the
offline `local` provider; 16 producer threads submit clip jobs (8 frames of 640x360 from the
synthetic scene) through the backend's RedisClipDispatcher, as clip processors do.

- jobs/s with 1, 2 and 4 workers (same job mix) and the scaling ratio vs 1 worker;
- the latency the Redis path adds: dispatcher call vs calling the provider in-process,
  p50/p99, one job at a time.

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
from vlm_monitor.config import ClipsConfig, VlmProviderConfig
from vlm_monitor.stats import percentile
from vlm_monitor.testing import ChildProcess, free_port, wait_until
from vlm_monitor.vlm.base import VlmRequest
from vlm_monitor.vlm.registry import ProviderSet
from vlm_monitor.worker.jobs import RedisClipDispatcher

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
        ChildProcess(
            [
                sys.executable,
                "-m",
                "vlm_monitor",
                "worker",
                "--redis-url",
                url,
                "--config",
                str(config),
                "--name",
                f"w{i}",
            ],
            tmp / f"w{n_workers}-{i}.out",
        )
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
    worker = ChildProcess(
        [sys.executable, "-m", "vlm_monitor", "worker", "--redis-url", url, "--config",
         str(config), "--name", "lat"],
        tmp / "lat.out",
    )  # fmt: skip
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
        finally:
            proc.terminate()
            proc.wait(5)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
