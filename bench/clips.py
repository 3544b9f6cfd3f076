"""Clip pipeline benchmark: prints one JSON object on stdout (progress on stderr).

A 720p30 H.264 stream (bench/feeder.py, exact rate) is ingested by a real backend twice: once
without clips, once with a clip every 10 s analysed by the offline `local` provider. Reports
frames dropped at ingest and in the processor, clip build time p50/p99, the processor's added
CPU (ratio of backend CPU with clips vs ingest alone) and clip end -> result on /ws/events.

Run: .venv/bin/python bench/clips.py [--window 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import websockets

from vlm_monitor.stats import percentile
from vlm_monitor.testing import ServerProcess, wait_until

ROOT = Path(__file__).resolve().parent
FPS = 30


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def run(tmp: Path, clips: bool, window: float) -> dict:
    feed = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "feeder.py"),
            "--count",
            "1",
            "--fps",
            str(FPS),
            "--size",
            "1280x720",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert feed.stdout is not None
    (port,) = json.loads(feed.stdout.readline())
    stream: dict = {"id": "b", "url": f"tcp://127.0.0.1:{port}"}
    if clips:
        stream["clips"] = {"clip_seconds": 10, "frames_per_clip": 8, "provider": "offline"}
    wd = tmp / ("clips" if clips else "ingest")
    wd.mkdir()
    srv = ServerProcess(
        wd, {"vlm": {"providers": [{"name": "offline", "kind": "local"}]}, "streams": [stream]}
    )
    delays: list[float] = []
    try:
        with srv.client() as c:
            wait_until(lambda: c.get("/api/streams/b").json()["state"] == "live", 30)
            time.sleep(2)
            before = c.get("/api/streams/b").json()
            proc = psutil.Process(srv.proc.pid)
            cpu0 = proc.cpu_times()

            async def listen() -> None:
                url = srv.url.replace("http", "ws") + "/ws/events"
                async with websockets.connect(url) as ws:
                    end = time.monotonic() + window
                    while (left := end - time.monotonic()) > 0:
                        try:
                            ev = json.loads(await asyncio.wait_for(ws.recv(), left))
                        except TimeoutError:
                            break
                        if ev["type"] == "result":
                            delays.append(time.time() - ev["video_info"]["end_timestamp"])

            asyncio.run(listen())
            cpu1 = proc.cpu_times()
            after = c.get("/api/streams/b").json()
    finally:
        srv.stop()
        feed.kill()
        feed.wait()
    frames = after["frames_in"] - before["frames_in"]
    out = {
        "frames_in": frames,
        "expected_frames": round(window * FPS),
        "ingest_dropped": max(0, round(window * FPS) - frames),
        "cpu_s": round((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system), 3),
    }
    if clips:
        st = after["clips"]
        out.update(
            {
                "clips": st["videos_created"],
                "results": len(delays),
                "processor_frames_dropped": st["frames_dropped"],
                "clip_build_p50_s": st["clip_build_p50_s"],
                "clip_build_p99_s": st["clip_build_p99_s"],
                "clip_end_to_result_event_p50_s": percentile(delays, 50),
                "clip_end_to_result_event_max_s": percentile(delays, 100),
            }
        )
    log(f"{'with clips' if clips else 'ingest only'}: {out}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=float, default=40.0, help="seconds measured per run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vlm-bench-clips-") as tmp:
        ingest = run(Path(tmp), False, args.window)
        clips = run(Path(tmp), True, args.window)
    report = {
        "stream": "720p30 H.264 over TCP",
        "window_s": args.window,
        "ingest_only": ingest,
        "with_clips": clips,
        "cpu_ratio_clips_vs_ingest": round(clips["cpu_s"] / ingest["cpu_s"], 3),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
