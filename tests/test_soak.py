"""Soak (marked slow; `pytest -m slow tests/test_soak.py -s`): 8 streams with analyzers,
4 MJPEG viewers and 2 /ws/events clients for SOAK_SECONDS (default 600). After a warm-up,
the server's RSS may not grow more than 5 %, and its open files and threads may not grow.
The numbers are printed as one JSON line."""

from __future__ import annotations

import json
import os
import statistics
import threading
import time

import httpx
import psutil
import pytest
from websockets.sync.client import connect

SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
WARMUP = min(90.0, SECONDS / 5)


@pytest.mark.slow
@pytest.mark.timeout(SECONDS + 300)
def test_soak_8_streams_4_viewers_2_event_clients(server) -> None:
    analyzers = [{"name": "motion", "fps": 5}, {"name": "emotion", "fps": 2},
                 {"name": "heart_rate", "fps": 10}]  # fmt: skip
    srv = server(
        {"streams": [{"id": f"s{i}", "url": f"synthetic://?scene=face&bpm={60 + 5 * i}&fps=10"
                      "&size=640x360", "analyzers": analyzers} for i in range(8)]}
    )  # fmt: skip
    stop = threading.Event()
    received = {"mjpeg_bytes": 0, "events": 0}
    lock = threading.Lock()

    def viewer(sid: str) -> None:
        while not stop.is_set():
            with httpx.stream("GET", f"{srv.url}/api/streams/{sid}/mjpeg", timeout=10) as r:
                for chunk in r.iter_bytes():
                    with lock:
                        received["mjpeg_bytes"] += len(chunk)
                    if stop.is_set():
                        return

    def events() -> None:
        while not stop.is_set():
            with connect(srv.url.replace("http", "ws", 1) + "/ws/events") as ws:
                while not stop.is_set():
                    try:
                        ws.recv(timeout=1)
                    except TimeoutError:
                        continue
                    with lock:
                        received["events"] += 1

    clients = [threading.Thread(target=viewer, args=(f"s{i}",), daemon=True) for i in range(4)]
    clients += [threading.Thread(target=events, daemon=True) for _ in range(2)]
    for t in clients:
        t.start()
    proc = psutil.Process(srv.proc.pid)
    samples: list[tuple[float, int, int, int]] = []  # (t, rss, fds, threads)
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < SECONDS:
        assert srv.alive(), srv.output()[-3000:]
        samples.append((elapsed, proc.memory_info().rss, proc.num_fds(), proc.num_threads()))
        time.sleep(5)
    with httpx.Client(base_url=srv.url) as c:
        streams = c.get("/api/streams").json()
    stop.set()
    for t in clients:
        t.join(15)

    after = [s for s in samples if s[0] >= WARMUP]
    window = max(3, len(after) // 10)
    rss_start = statistics.median(s[1] for s in after[:window])
    rss_end = statistics.median(s[1] for s in after[-window:])
    fds_start, fds_end = after[0][2], max(s[2] for s in after[-window:])
    threads_start, threads_end = after[0][3], max(s[3] for s in after[-window:])
    results = {s["id"]: s["analyzers"]["heart_rate"]["results"] for s in streams}
    errors = sum(a["errors"] for s in streams for a in s["analyzers"].values())
    report = {
        "seconds": SECONDS, "warmup_s": WARMUP,
        "rss_mb": [round(rss_start / 1e6, 1), round(rss_end / 1e6, 1)],
        "rss_growth_pct": round(100 * (rss_end - rss_start) / rss_start, 2),
        "fds": [fds_start, fds_end], "threads": [threads_start, threads_end],
        "mjpeg_mb": round(received["mjpeg_bytes"] / 1e6, 1), "events": received["events"],
        "heart_rate_results": sum(results.values()), "analyzer_errors": errors,
    }  # fmt: skip
    print(json.dumps({"soak": report}))
    assert rss_end <= rss_start * 1.05, report
    assert fds_end <= fds_start + 2 and threads_end <= threads_start + 2, report
    assert all(n > 0 for n in results.values()) and errors == 0, report
    assert received["events"] > 100 and received["mjpeg_bytes"] > 1e6, report
