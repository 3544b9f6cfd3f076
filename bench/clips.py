"""Clip pipeline benchmark: prints one JSON object on stdout (progress on stderr).

A 720p30 H.264 stream (bench/feeder.py, exact rate) is ingested by a real backend twice: once
without clips, once with a clip every 10 s analysed by the offline `local` provider. Reports
frames dropped at ingest and in the processor, clip build time p50/p99, the processor's added
CPU (ratio of backend CPU with clips vs ingest alone) and clip end -> result on /ws/events.

With --dedupe, instead: 100 s of a still scene (1 s clips) with four scripted changes through
the clip processor; VLM calls with the near-duplicate skip off and on, and any change no call
saw.

With --freshness, instead: result freshness (newest frame of a clip captured -> its result
delivered on /ws/events), p50/p95, when the VLM is slower than real time: a real backend makes
a 2 s clip of a live camera every 2 s and an OpenAI-protocol fake answers each call after 5 s.
Once per clip-queue setting (``stale_policy`` and ``deadline_s``), with what the queue did:
clips dropped as stale, frames dropped because the writer was blocked, the backlog at the end.

Run: .venv/bin/python bench/clips.py [--window 40] | [--dedupe] | [--freshness [--window 60]]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import psutil
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fake_vlm import FakeVlm
from vlm_monitor.stats import percentile
from vlm_monitor.testing import ServerProcess, wait_until

ROOT = Path(__file__).resolve().parent
FPS = 30


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


async def each_result(server_url: str, window: float, handle: Callable[[dict], None]) -> None:
    """``handle`` each clip result pushed on the server's /ws/events for ``window`` seconds."""
    async with websockets.connect(server_url.replace("http", "ws") + "/ws/events") as ws:
        end = time.monotonic() + window
        while (left := end - time.monotonic()) > 0:
            try:
                ev = json.loads(await asyncio.wait_for(ws.recv(), left))
            except TimeoutError:
                break
            if ev["type"] == "result":
                handle(ev)


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

            def delay(ev: dict) -> None:
                delays.append(time.time() - ev["video_info"]["end_timestamp"])

            asyncio.run(each_result(srv.url, window, delay))
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


# Near-duplicate skip: (second, what happens) on an otherwise still scene.
CHANGES = [(20, "person enters"), (35, "person leaves"), (50, "car passes"), (70, "light dims")]


def scripted_frame(base: np.ndarray, rng: np.random.Generator, second: float) -> np.ndarray:
    img = base.astype(np.float32)
    if second >= 70:
        img *= 0.85
    img += rng.normal(0, 3, img.shape)  # sensor noise
    out = np.clip(img, 0, 255).astype(np.uint8)
    if 20 <= second < 35:
        out[190:300, 420:460] = (40, 40, 150)  # a person, 1.9 % of the picture
    if 50.3 <= second < 50.6:
        out[240:320, 0:200] = (200, 200, 210)  # a car, in the middle of one clip only
    # Through JPEG, as camera frames are: block artefacts vary from frame to frame.
    _, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def dedupe_run(dedupe: bool, seconds: int = 100, fps: int = 6) -> dict:
    from vlm_monitor.clips.processor import AsyncVideoProcessor
    from vlm_monitor.clips.store import ClipStore
    from vlm_monitor.config import ClipsConfig
    from vlm_monitor.vlm.base import VlmAnswer, VlmRequest

    calls: list[VlmRequest] = []

    def analyze(request: VlmRequest) -> tuple[str, VlmAnswer]:
        calls.append(request)
        return "bench", VlmAnswer(text="ok")

    photo = Path(__file__).resolve().parents[1] / "src/vlm_monitor/camera"
    base = cv2.resize(cv2.imread(str(photo / "face.jpg")), (640, 360))
    config = ClipsConfig(
        clip_seconds=1.0, frames_per_clip=6, min_free_mb=0, dedupe={"enabled": dedupe}
    )
    with tempfile.TemporaryDirectory() as tmp:
        proc = AsyncVideoProcessor("bench", config, ClipStore(Path(tmp), min_free_mb=0), analyze)
        proc.start()
        rng = np.random.default_rng(0)
        t0 = time.time()
        for i in range((seconds + 1) * fps):
            while proc.frame_queue.qsize() > 50:
                time.sleep(0.005)
            proc.add_frame(scripted_frame(base, rng, i / fps), t0 + i / fps, i)
        while not proc.frame_queue.empty() or proc.video_queue.qsize():
            time.sleep(0.05)
        time.sleep(0.5)
        proc.stop()
        stats = proc.get_statistics()
    missed = []
    for at, what in CHANGES:
        onset = t0 + at
        # Seen when a call's clip spans the onset (or starts within the next clip).
        if not any(r.timestamps[0] <= onset + 1.0 and r.timestamps[-1] >= onset for r in calls):
            missed.append(what)
    return {
        "clips": stats["videos_created"] + stats["clips_skipped_duplicate"],
        "calls": len(calls),
        "skipped_duplicate": stats["clips_skipped_duplicate"],
        "missed_changes": missed,
    }


def dedupe_report() -> dict:
    off, on = dedupe_run(False), dedupe_run(True)
    return {
        "scene": "still photo, sensor noise, JPEG; "
        + ", ".join(f"{w} at {c} s" for c, w in CHANGES),
        "dedupe_off": off,
        "dedupe_on": on,
        "fewer_calls_pct": round(100 * (1 - on["calls"] / off["calls"]), 1),
    }


# The VLM is slower than real time: one answer takes longer than the clip it is about.
CLIP_S, VLM_DELAY_S = 2.0, 5.0
QUEUE_SETTINGS = [
    ("drop_oldest, deadline_s 120 (default)", {"stale_policy": "drop_oldest", "deadline_s": 120}),
    ("drop_oldest, deadline_s 10", {"stale_policy": "drop_oldest", "deadline_s": 10}),
    ("latest_wins, deadline_s 120", {"stale_policy": "latest_wins", "deadline_s": 120}),
]


def freshness_run(tmp: Path, name: str, queue: dict, window: float) -> dict:
    fake = FakeVlm(answer="A ball moves.")
    fake.behaviours.extend([("slow", VLM_DELAY_S)] * 10_000)
    clips = {"clip_seconds": CLIP_S, "frames_per_clip": 4, "provider": "slow", **queue}
    config = {
        "vlm": {
            "providers": [
                {"name": "slow", "kind": "openai", "base_url": fake.url + "/v1", "model": "m"}
            ]
        },
        "streams": [{"id": "f", "url": "synthetic://?fps=15&size=640x360", "clips": clips}],
    }
    wd = tmp / f"fresh{len(list(tmp.iterdir()))}"
    wd.mkdir()
    srv = ServerProcess(wd, config)
    newest: list[float] = []  # newest frame of the clip captured -> result on /ws/events, s
    oldest: list[float] = []
    try:
        with srv.client() as c:
            wait_until(lambda: c.get("/api/streams/f").json()["state"] == "live", 30)

            def ages(ev: dict) -> None:
                if ev.get("stream") == "f":
                    now, info = time.time(), ev["video_info"]
                    newest.append(now - info["end_timestamp"])
                    oldest.append(now - info["start_timestamp"])

            asyncio.run(each_result(srv.url, window, ages))
            st = c.get("/api/streams/f").json()["clips"]
    finally:
        srv.stop()
        fake.close()
    third = max(1, len(newest) // 3)
    out = {
        "queue": name,
        "results": len(newest),
        "clips_made": st["videos_created"],
        "clips_dropped_stale": st["clips_dropped_stale"],
        "frames_dropped_writer_blocked": st["frames_dropped"],
        "fresh_p50_s": percentile(newest, 50),
        "fresh_p95_s": percentile(newest, 95),
        "fresh_last_third_p50_s": percentile(newest[-third:], 50),
        "oldest_frame_p95_s": percentile(oldest, 95),
        "lag_s_at_end": st["lag_s"],
    }
    log(f"freshness: {out}")
    return out


def freshness_report(window: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="vlm-bench-fresh-") as tmp:
        runs = [freshness_run(Path(tmp), n, q, window) for n, q in QUEUE_SETTINGS]
    return {
        "stream": "synthetic 640x360 at 15 fps, in the backend",
        "clip_seconds": CLIP_S,
        "vlm_answer_s": VLM_DELAY_S,
        "max_in_flight": 10,
        "window_s": window,
        "runs": runs,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=float, default=40.0, help="seconds measured per run")
    parser.add_argument(
        "--dedupe", action="store_true", help="only: VLM calls with near-duplicate skip off/on"
    )
    parser.add_argument(
        "--freshness", action="store_true", help="only: result freshness with a slow VLM"
    )
    args = parser.parse_args()
    if args.dedupe:
        print(json.dumps(dedupe_report()))
        return 0
    if args.freshness:
        print(json.dumps(freshness_report(args.window)))
        return 0
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
