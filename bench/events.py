"""Events benchmark: prints one JSON object on stdout (progress on stderr).

A real mosquitto on loopback, the test camera (MPEG-TS/H.264 640x360 at 15 fps over TCP) and
a `vlm-monitor serve` with `mqtt.url` set and 8 streams reading that camera, each with the
`motion` analyzer at 15 fps (min_level 0.1, hold_s 0.5: the synthetic scene's moving disc
crosses that level every few seconds, so motion events open and close again and again, on the
8 streams at once). One MQTT client (aiomqtt, `vlm-monitor/+/events`) and one `/ws/events`
client listen for the measured window.

- latency of each `open` event, from the triggering frame to its arrival at each client,
  p50/p99. The event carries `frame_ts`, the time its triggering frame left the decoder: that
  is the start. Also split: frame -> `started_at` (when the tracker opened the event) and
  `started_at` -> arrival.
- events opened / updated / closed in the window, per channel;
- disk per event: mean snapshot JPEG, mean event clip MP4 (written `postroll_s` after the
  event opened), and the growth of the `events` tables in SQLite (dbstat) and of the whole
  database file (which also holds the motion readings) divided by the events stored.

Run: .venv/bin/python bench/events.py [--seconds 40] [--streams 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
from websockets.asyncio.client import connect

from vlm_monitor.stats import percentile
from vlm_monitor.testing import CameraProcess, ServerProcess, free_port, wait_until, workdir

PREFIX = "vlm-monitor"
MOTION = {"min_level": 0.1, "hold_s": 0.5}
POSTROLL_S = 5.0  # the default: clips are written this long after an event opens


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


class Listener:
    """Arrival times of event messages on one channel, by (event id, action)."""

    def __init__(self) -> None:
        self.arrivals: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self.counts = {"open": 0, "update": 0, "close": 0}

    def got(self, action: str, event: dict[str, Any], at: float) -> None:
        if event.get("kind") != "motion" or action not in self.counts:
            return
        self.counts[action] += 1
        self.arrivals.setdefault((event["id"], action), (at, event))


async def ws_client(url: str, out: Listener) -> None:
    async with connect(url, max_size=None) as ws:
        async for raw in ws:
            at = time.time()
            msg = json.loads(raw)
            if msg.get("type") == "event":
                out.got(msg.get("action", ""), msg.get("event") or {}, at)


async def mqtt_client(port: int, out: Listener, ready: asyncio.Event) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe(f"{PREFIX}/+/events", qos=1)
        ready.set()
        async for message in client.messages:
            at = time.time()
            payload = message.payload
            if not isinstance(payload, bytes | bytearray):
                continue
            doc = json.loads(payload)
            out.got(doc.get("action", ""), doc, at)


def dir_bytes(path: Path, suffix: str) -> list[int]:
    return [p.stat().st_size for p in path.glob(f"*{suffix}")] if path.exists() else []


def db_sizes(db: Path) -> tuple[int, int, int]:
    """(events stored, bytes of the events tables with their index and FTS shadow tables,
    bytes of the whole database): pages as a reader sees them, WAL included, so a checkpoint
    or a WAL file not yet truncated does not count."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        n = con.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        tables = con.execute(
            "SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name LIKE 'events%'"
        ).fetchone()[0]
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
    finally:
        con.close()
    return int(n), int(tables), int(pages * page_size)


def latencies(out: Listener, t0: float, t1: float) -> dict[str, Any]:
    total, frame_to_open, open_to_arrival = [], [], []
    missing = 0
    for (_, action), (at, event) in out.arrivals.items():
        if action != "open" or not t0 <= event["started_at"] <= t1:
            continue
        open_to_arrival.append(1000 * (at - event["started_at"]))
        ts = event.get("frame_ts")
        if ts is None:
            missing += 1
            continue
        total.append(1000 * (at - ts))
        frame_to_open.append(1000 * (event["started_at"] - ts))

    def p(v: list[float]) -> dict[str, float | None]:
        return {"p50": percentile(v, 50, 1), "p99": percentile(v, 99, 1)}

    return {
        "opens": len(open_to_arrival),
        "frame_to_arrival_ms": p(total),
        "frame_to_started_at_ms": p(frame_to_open),
        "started_at_to_arrival_ms": p(open_to_arrival),
        "no_frame_time": missing,
    }


async def listen(
    server: ServerProcess, mqtt_port: int, seconds: float, tail_s: float
) -> tuple[Listener, Listener, float, float]:
    ws_out, mqtt_out = Listener(), Listener()
    ready = asyncio.Event()
    ws_url = f"ws://127.0.0.1:{server.port}/ws/events"
    tasks = [
        asyncio.create_task(ws_client(ws_url, ws_out)),
        asyncio.create_task(mqtt_client(mqtt_port, mqtt_out, ready)),
    ]
    await asyncio.wait_for(ready.wait(), 10)
    await asyncio.sleep(1)  # both clients connected
    t0 = time.time()
    log(f"measuring for {seconds:.0f} s")
    await asyncio.sleep(seconds)
    t1 = time.time()
    await asyncio.sleep(tail_s)  # the messages of the last events, the last clips
    for task in tasks:
        if task.done() and task.exception() is not None:
            raise RuntimeError(f"a client failed: {task.exception()!r}")
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return ws_out, mqtt_out, t0, t1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--streams", type=int, default=8)
    args = parser.parse_args()
    broker = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(broker).exists():
        raise SystemExit("mosquitto missing: apt-get install mosquitto")
    with workdir() as tmp:
        mqtt_port = free_port()
        conf = tmp / "mosquitto.conf"
        conf.write_text(f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\n")
        mosq = subprocess.Popen(
            [broker, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        camera = server = None
        try:
            camera = CameraProcess(tmp, fps=15, size="640x360")
            streams = [
                {"id": f"cam{i}", "url": camera.url,
                 "analyzers": [{"name": "motion", "fps": 15, "params": MOTION}]}
                for i in range(args.streams)
            ]  # fmt: skip
            config = {
                "mqtt": {"url": f"mqtt://127.0.0.1:{mqtt_port}", "topic_prefix": PREFIX},
                "events": {"postroll_s": POSTROLL_S},
                "streams": streams,
            }
            server = ServerProcess(tmp, config)
            data = tmp / "data"

            def all_live() -> bool:
                got = httpx.get(server.url + "/api/streams", timeout=5).json()
                return len(got) == args.streams and all(s["state"] == "live" for s in got)

            wait_until(all_live, 30, what="streams live")
            n_before, tables_before, db_before = db_sizes(data / "vlm-monitor.db")
            log(f"{args.streams} streams live; mosquitto on {mqtt_port}")
            ws_out, mqtt_out, t0, t1 = asyncio.run(
                listen(server, mqtt_port, args.seconds, POSTROLL_S + 2)
            )
            with server.client() as c:
                status = c.get("/api/streams").json()
            server.stop()
            camera.stop()
            n_after, tables_after, db_after = db_sizes(data / "vlm-monitor.db")
        finally:
            for proc in (server, camera):
                if proc is not None:
                    proc.stop()
            mosq.terminate()
            mosq.wait(5)
        jpgs = dir_bytes(data / "events", ".jpg")
        mp4s = dir_bytes(data / "events", ".mp4")
        stored = max(1, n_after - n_before)
        report: dict[str, Any] = {
            "streams": args.streams,
            "seconds": round(t1 - t0, 1),
            "motion_params": MOTION,
            "latency": {
                "mqtt": latencies(mqtt_out, t0, t1),
                "ws_events": latencies(ws_out, t0, t1),
            },
            "messages_incl_tail": {"mqtt": mqtt_out.counts, "ws_events": ws_out.counts},
            "disk": {
                "events_stored": n_after - n_before,
                "snapshots": len(jpgs),
                "snapshot_bytes_mean": round(sum(jpgs) / len(jpgs)) if jpgs else None,
                "clips": len(mp4s),
                "clip_bytes_mean": round(sum(mp4s) / len(mp4s)) if mp4s else None,
                "sqlite_events_tables_bytes_per_event": round(
                    (tables_after - tables_before) / stored
                ),
                "sqlite_file_growth_bytes_per_event": round((db_after - db_before) / stored),
            },
            "analyzer_dropped": sum(
                s.get("analyzers", {}).get("motion", {}).get("dropped", 0) for s in status
            ),
        }
        opens = report["latency"]["ws_events"]["opens"]
        report["opens_per_stream_per_min"] = round(opens / args.streams / (t1 - t0) * 60, 1)
        d = report["disk"]
        d["per_event_bytes"] = (
            (d["snapshot_bytes_mean"] or 0)
            + (d["clip_bytes_mean"] or 0)
            + (d["sqlite_events_tables_bytes_per_event"])
        )
        log(json.dumps(report["latency"]))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
