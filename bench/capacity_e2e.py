"""End-to-end analyzer capacity, the way a proctor runs it: N students, each a real H.264
stream over TCP (bench/feeder.py: the face scene with a 72 bpm pulse, encoded once, served at
an exact 15 fps), read by a real ``vlm-monitor serve`` (decode, the shared downscale, the hub,
the analyzers, SQLite, the push channels), each stream with emotion at 5 fps, heart rate at 15
and attention at 5. The new pipeline runs twice: in one analyzer process per core
(``analysis.processes``) and on the server's analyzer threads.

A count keeps up when every analyzer of every stream holds >= 95 % of its rate over the
measuring window and every heart-rate reading in it is within 3 bpm of 72 (none null). The
old pipeline (bench/old_faces.py: Haar, box skin region, no attention) runs on the same
streams in the same run. ``ingest_cores`` is the same count with no analyzers: the decode
and conversion cost that a capacity step fed pre-decoded frames never pays.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil

from vlm_monitor.testing import free_port, wait_until

ROOT = Path(__file__).resolve().parent
FPS, BPM = 15, 72
NEW = {"emotion": 5, "heart_rate": 15, "attention": 5}
OLD = {"emotion": 5, "heart_rate": 15}


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


class Feeder:
    """``count`` single-client TCP cameras of the face scene at ``size``."""

    def __init__(self, count: int, size: str, bitrate: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "feeder.py"), "--count", str(count), "--size", size,
             "--fps", str(FPS), "--scene", "face", "--bitrate", str(bitrate)],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.ports: list[int] = json.loads(self.proc.stdout.readline())

    def cpu_s(self) -> float:
        t = psutil.Process(self.proc.pid).cpu_times()
        return t.user + t.system

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _server(
    workdir: Path,
    ports: list[int],
    rates: dict[str, int],
    old: bool,
    processes: int = 0,
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    streams = [
        {"id": f"s{i}", "url": f"tcp://127.0.0.1:{p}",
         "analyzers": [{"name": name, "fps": fps} for name, fps in rates.items()]}
        for i, p in enumerate(ports)
    ]  # fmt: skip
    run = workdir / f"run-{time.monotonic_ns()}"
    run.mkdir(parents=True)
    config = {
        "server": {"port": port, "data_dir": str(run / "data"), "log_dir": str(run / "logs")},
        "streams": streams,
        "analysis": {"processes": processes},
    }
    path = run / "config.json"
    path.write_text(json.dumps(config))
    entry = [str(ROOT / "old_faces.py")] if old else ["-m", "vlm_monitor"]
    out = (run / "server.out").open("wb")
    proc = subprocess.Popen([sys.executable, *entry, "serve", "--config", str(path)],
                            stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {(run / 'server.out').read_text()[-2000:]}")
        try:
            return httpx.get(url + "/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, 60, what="server healthy")
    return proc, url


def _cpu_s(pid: int) -> float:
    """CPU seconds of the server and its analyzer processes."""
    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def run_step(
    workdir: Path,
    feeder: Feeder,
    n: int,
    old: bool,
    warm_s: float,
    window_s: float,
    rates: dict[str, int] | None = None,
    processes: int = 0,
) -> dict[str, Any]:
    """N streams with the new pipeline (or the old one) for ``window_s`` after ``warm_s``;
    ``rates={}``: no analyzers; ``processes``: analyzer processes (0: threads)."""
    rates = (OLD if old else NEW) if rates is None else rates
    proc, url = _server(workdir, feeder.ports[:n], rates, old, processes)
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            time.sleep(warm_s)  # connect, first frames, the first 10 s heart-rate window

            def frames() -> dict[str, dict[str, int]]:
                doc = http.get("/api/analyzers").json()["streams"]
                return {sid: {a: s["frames"] for a, s in st.items()} for sid, st in doc.items()}

            before, cpu0, feed0, t0 = frames(), _cpu_s(proc.pid), feeder.cpu_s(), time.time()
            time.sleep(window_s)
            after, cpu1, feed1, t1 = frames(), _cpu_s(proc.pid), feeder.cpu_s(), time.time()
            overload = http.get("/api/analyzers").json()["overload"]
            if not rates:  # ingest only
                cores = round((cpu1 - cpu0) / (t1 - t0), 2)
                return {"streams": n, "server_cores": cores, "note": "decode, conversion, hub"}
            fps = {
                name: min((after[s][name] - before[s][name]) / (t1 - t0) for s in after)
                for name in rates
            }
            errors, nulls, readings = [], 0, 0
            for sid in after:
                rows = http.get(
                    "/api/analyses", params={"stream": sid, "analyzer": "heart_rate", "limit": 500}
                ).json()
                for row in rows:
                    if t0 <= row["video_timestamp"] <= t1:
                        bpm = row["result"]["bpm"]
                        readings += 1
                        if bpm is None:
                            nulls += 1
                        else:
                            errors.append(abs(bpm - BPM))
    finally:
        proc.terminate()
        proc.wait(30)
    holds = all(fps[name] >= 0.95 * rate for name, rate in rates.items())
    accurate = bool(errors) and max(errors) <= 3 and nulls == 0
    return {
        "streams": n,
        "server_cores": round((cpu1 - cpu0) / (t1 - t0), 2),
        "feeder_cores": round((feed1 - feed0) / (t1 - t0), 2),
        **{f"{name}_fps_min": round(v, 2) for name, v in fps.items()},
        "hr_readings": readings,
        "hr_null": nulls,
        "bpm_max_error": round(max(errors), 1) if errors else None,
        "rate_share": overload["share"],
        "keeps_up": holds and accurate,
    }


def largest(
    step: Callable[[int], dict[str, Any]], ladder: list[int], start: int
) -> tuple[int, list[dict[str, Any]]]:
    """The largest count on ``ladder`` that keeps up: from ``start`` upwards while it passes,
    downwards while it fails."""
    rows: dict[int, dict[str, Any]] = {}
    i = ladder.index(start)
    while 0 <= i < len(ladder):
        n = ladder[i]
        rows[n] = step(n)
        log(f"  {n} streams: {rows[n]}")
        passed = rows[n]["keeps_up"]
        nxt = i + 1 if passed else i - 1
        if not 0 <= nxt < len(ladder) or ladder[nxt] in rows:
            break
        i = nxt
    best = max((n for n, r in rows.items() if r["keeps_up"]), default=0)
    return best, [rows[n] for n in sorted(rows)]


class Steps:
    """One count of streams at a time, on one feeder."""

    def __init__(self, workdir: Path, feeder: Feeder, warm: float, window: float) -> None:
        self.workdir, self.feeder, self.warm, self.window = workdir, feeder, warm, window

    def new(self, processes: int) -> Callable[[int], dict[str, Any]]:
        return lambda n: run_step(
            self.workdir, self.feeder, n, False, self.warm, self.window, None, processes
        )

    def old(self, n: int) -> dict[str, Any]:
        return run_step(self.workdir, self.feeder, n, True, self.warm, self.window)


def capacity_e2e(workdir: Path, quick: bool) -> dict[str, Any]:
    warm, window = (16.0, 10.0) if quick else (16.0, 20.0)
    cores = os.cpu_count() or 2
    plans = [  # size, bitrate, ladder, where the threads, processes and old ladders start
        ("640x480", 1_000_000, [2, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48], 24, 40, 8),
        ("1280x720", 2_500_000, [2, 4, 6, 8, 10, 12, 16, 20, 24, 28, 32], 16, 24, 12),
    ]
    report: dict[str, Any] = {"analyzer_processes": cores}
    for size, bitrate, ladder, threads_start, procs_start, old_start in plans:
        feeder = Feeder(max(ladder), size, bitrate)
        try:
            log(f"e2e {size}: new pipeline in {cores} analyzer processes")
            steps = Steps(workdir, feeder, warm, window)
            procs_best, procs_rows = largest(steps.new(cores), ladder, procs_start)
            log(f"e2e {size}: new pipeline on analyzer threads")
            threads_best, threads_rows = largest(steps.new(0), ladder, threads_start)
            log(f"e2e {size}: old pipeline (Haar; emotion 5 + heart rate 15 fps), threads")
            old_best, old_rows = largest(steps.old, ladder, old_start)
            ingest = run_step(workdir, feeder, procs_best or 2, False, 8.0, window, rates={})
            log(f"e2e {size}: ingest only {ingest}")
        finally:
            feeder.stop()
        report[size] = {
            "new_processes_keeps_up": procs_best,
            "new_threads_keeps_up": threads_best,
            "old_keeps_up": old_best,
            "new_processes": procs_rows,
            "new_threads": threads_rows,
            "old": old_rows,
            "ingest_only": ingest,
        }
    return report
