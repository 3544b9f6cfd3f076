"""What the proctor's wall costs: 32 streams at 720p15, the wall open in headless Chromium,
against 32 full-size MJPEG views of the same streams.

The streams come from bench/feeder.py (one pre-encoded 720p15 H.264 clip replayed to 32
single-client TCP cameras on an exact schedule, almost no CPU), read by a real server with no
analyzers. Three windows of the same length, CPU as process CPU seconds (the machine is shared,
so wall-clock time says little):

- ingest: no viewer, the server's baseline (decoding 32 x 720p15);
- wall: /wall at 1920x1080 in headless Chromium (2 fps thumbnails over WS /ws/wall); the bytes
  are every WebSocket frame the page received; the browser's CPU is its processes' CPU;
- full views: 32 full-size MJPEG views (/api/streams/{id}/mjpeg at server.mjpeg_fps, 15),
  read by HTTP clients in this process: a browser cannot show them (six connections per
  server), which is why the wall uses one socket.

The view cost is each window's server CPU minus the ingest windows' (one before, one after,
averaged). On a small machine 32 full-size views cannot be served at 15 fps (about 12 ms of
encoding each, 480 a second): the server then sends what it can, and a raw comparison would
flatter the full views. So each side's cost is also given per picture delivered and at its
nominal rate (32 x 15 full-size pictures a second, 32 x 2 thumbnails); the goal compares those.
Goal: the wall's view cost < 25 % of the full views', and < 2 MB/s to the browser.

Run: python bench/wall.py [--seconds 20]; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from vlm_monitor.testing import ServerProcess, chromium, wait_until

ROOT = Path(__file__).parent
STREAMS = 32


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cpu_s(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def browser_procs() -> list[psutil.Process]:
    me = psutil.Process(os.getpid())
    return [p for p in me.children(recursive=True) if "chrom" in p.name().lower()]


def window(server: psutil.Process, seconds: float, others: list[psutil.Process] | None = None):
    """(server CPU seconds, others' CPU seconds) over ``seconds``."""
    others = others or []
    s0, o0 = cpu_s([server]), cpu_s(others)
    time.sleep(seconds)
    return cpu_s([server]) - s0, cpu_s(others) - o0


class MjpegReader(threading.Thread):
    """One full-size MJPEG viewer: counts bytes and parts."""

    def __init__(self, url: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url, self.stop, self.bytes, self.parts = url, stop, 0, 0

    def run(self) -> None:
        with httpx.Client(timeout=30) as client, client.stream("GET", self.url) as r:
            for chunk in r.iter_bytes(65536):
                self.bytes += len(chunk)
                self.parts += chunk.count(b"--vlmframe")
                if self.stop.is_set():
                    return


def measure(seconds: float, tmp: Path) -> dict[str, Any]:
    feed = subprocess.Popen(
        [sys.executable, str(ROOT / "feeder.py"), "--count", str(STREAMS)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert feed.stdout is not None
    try:
        ports = json.loads(feed.stdout.readline())
        streams = [
            {"id": f"exam-E-user-{i + 1:02d}", "url": f"tcp://127.0.0.1:{port}"}
            for i, port in enumerate(ports)
        ]
        srv = ServerProcess(tmp, {"streams": streams})
        try:
            return run(srv, seconds)
        finally:
            srv.stop()
    finally:
        feed.kill()
        feed.wait()


def run(srv: ServerProcess, seconds: float) -> dict[str, Any]:
    server = psutil.Process(srv.proc.pid)
    with srv.client() as c:
        wait_until(lambda: all(s["state"] == "live" for s in c.get("/api/streams").json()), 60)
    time.sleep(3)
    ingest_before, _ = window(server, seconds)
    log(f"ingest: {ingest_before:.1f} CPU s in {seconds} s")

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1920, "height": 1080})
        received = {"bytes": 0, "messages": 0}

        def on_socket(ws: Any) -> None:
            def on_frame(payload: str | bytes) -> None:
                received["bytes"] += len(payload)
                received["messages"] += 1

            ws.on("framereceived", on_frame)

        page.on("websocket", on_socket)
        page.goto(srv.url + "/wall")
        page.wait_for_function(
            f"""() => {{
            const tiles = [...document.querySelectorAll('#grid .tile')];
            return tiles.length === {STREAMS} && tiles.every((t) => t.dataset.pictures >= 2);
        }}""",
            timeout=60000,
        )
        width = page.evaluate("() => thumbs.width")
        time.sleep(2)
        shown = (
            "() => [...document.querySelectorAll('.tile')]"
            ".reduce((n, t) => n + Number(t.dataset.pictures), 0)"
        )
        # Playwright hands over the socket frames only while it is called: each evaluate
        # also brings the byte count up to date.
        p0 = page.evaluate(shown)
        b0, m0 = received["bytes"], received["messages"]
        procs = browser_procs()
        wall, browser_cpu = window(server, seconds, procs)
        p1 = page.evaluate(shown)
        fps_in = mean_fps_in(srv)
        wall_bytes = received["bytes"] - b0
        wall_messages = received["messages"] - m0
        page.close()
    log(f"wall: {wall:.1f} CPU s, {wall_bytes / seconds / 1e6:.2f} MB/s")
    time.sleep(2)

    stop = threading.Event()
    readers = [MjpegReader(f"{srv.url}/api/streams/{s}/mjpeg", stop) for s in stream_ids(srv)]
    for r in readers:
        r.start()
    time.sleep(3)
    f0 = sum(r.bytes for r in readers), sum(r.parts for r in readers)
    full, _ = window(server, seconds)
    f1 = sum(r.bytes for r in readers), sum(r.parts for r in readers)
    full_fps_in = mean_fps_in(srv)
    stop.set()
    log(f"full views: {full:.1f} CPU s, {(f1[0] - f0[0]) / seconds / 1e6:.2f} MB/s")
    time.sleep(3)
    ingest_after, _ = window(server, seconds)
    log(f"ingest again: {ingest_after:.1f} CPU s")

    ingest = (ingest_before + ingest_after) / 2
    wall_cost, full_cost = wall - ingest, full - ingest
    wall_pictures, full_pictures = (p1 - p0) / seconds, (f1[1] - f0[1]) / seconds
    # CPU seconds per picture delivered, and what the nominal rates cost at that price.
    wall_each = wall_cost / seconds / wall_pictures if wall_pictures else None
    full_each = full_cost / seconds / full_pictures if full_pictures else None
    wall_nominal = wall_each * STREAMS * 2 if wall_each is not None else None
    full_nominal = full_each * STREAMS * 15 if full_each is not None else None
    nominal_ratio = (
        wall_nominal / full_nominal if wall_nominal is not None and full_nominal else None
    )
    wall_bytes_nominal = wall_bytes / seconds / wall_pictures * STREAMS * 2 if wall_pictures else 0
    return {
        "streams": STREAMS,
        "source": "720p15 H.264 over TCP (bench/feeder.py), no analyzers",
        "window_s": seconds,
        "server_cpu_cores": {
            "ingest": round(ingest / seconds, 3),
            "wall": round(wall / seconds, 3),
            "full_views": round(full / seconds, 3),
        },
        "view_cost_cpu_cores": {
            "wall": round(wall_cost / seconds, 3),
            "full_views": round(full_cost / seconds, 3),
        },
        "ingest_cpu_cores_before_after": [
            round(ingest_before / seconds, 3),
            round(ingest_after / seconds, 3),
        ],
        "wall_over_full_views_raw": round(wall_cost / full_cost, 3) if full_cost > 0 else None,
        "cpu_ms_per_picture": {
            "wall": round(wall_each * 1000, 2) if wall_each is not None else None,
            "full_views": round(full_each * 1000, 2) if full_each is not None else None,
        },
        "view_cost_at_nominal_rates_cpu_cores": {
            "wall_32x2fps": round(wall_nominal, 3) if wall_nominal is not None else None,
            "full_views_32x15fps": round(full_nominal, 3) if full_nominal is not None else None,
        },
        "wall_over_full_views": round(nominal_ratio, 3) if nominal_ratio is not None else None,
        "wall": {
            "thumbnail_width": width,
            "bytes_per_s": round(wall_bytes / seconds),
            "websocket_messages_per_s": round(wall_messages / seconds, 1),
            "pictures_shown_per_s": round(wall_pictures, 1),
            "bytes_per_s_at_2fps": round(wall_bytes_nominal),
            "browser_cpu_cores": round(browser_cpu / seconds, 3),
            "server_fps_in_per_stream": round(fps_in, 1),
        },
        "full_views": {
            "bytes_per_s": round((f1[0] - f0[0]) / seconds),
            "pictures_per_s": round(full_pictures, 1),
            "server_fps_in_per_stream": round(full_fps_in, 1),
        },
        "goals": {
            "wall_under_25pct_of_full_views": nominal_ratio is not None and nominal_ratio < 0.25,
            "wall_under_2MB_per_s": max(wall_bytes / seconds, wall_bytes_nominal) < 2e6,
        },
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }


def mean_fps_in(srv: ServerProcess) -> float:
    """Frames/s the server decodes per stream, averaged: below 15, it is short of CPU."""
    with srv.client() as c:
        streams = c.get("/api/streams").json()
    return sum(s["fps_in"] or 0 for s in streams) / len(streams)


def stream_ids(srv: ServerProcess) -> list[str]:
    with srv.client() as c:
        return [s["id"] for s in c.get("/api/streams").json()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0, help="each measuring window")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-wall-") as tmp:
        print(json.dumps(measure(args.seconds, Path(tmp))))


if __name__ == "__main__":
    main()
