"""Graceful shutdown: SIGTERM while analyzers and clips are producing. The process exits 0,
the event client is closed with a proper close frame, and every result that was pushed is in
SQLite (nothing produced is lost), with no traceback in the log."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from vlm_monitor.testing import wait_until


def test_sigterm_loses_no_result(server, tmp_path) -> None:
    clips = {"clip_seconds": 1, "frames_per_clip": 2, "input_fps": 2, "provider": "offline"}
    srv = server(
        {
            "vlm": {"providers": [{"name": "offline", "kind": "local"}]},
            "streams": [
                {"id": "face", "url": "synthetic://?scene=face&fps=15&size=640x360",
                 "analyzers": [{"name": "motion", "fps": 5}, {"name": "heart_rate", "fps": 15}]},
                {"id": "yard", "url": "synthetic://?fps=10&size=320x180", "clips": clips,
                 "analyzers": [{"name": "motion", "fps": 10}]},
            ],
        }
    )  # fmt: skip
    events: list[dict] = []
    closed: dict = {}

    def listen() -> None:
        with connect(srv.url.replace("http", "ws", 1) + "/ws/events") as ws:
            try:
                for raw in ws:
                    events.append(json.loads(raw))
            except ConnectionClosed:
                pass
            closed["code"] = ws.close_code

    listener = threading.Thread(target=listen)
    listener.start()
    wait_until(
        lambda: (
            sum(e["type"] == "result" for e in events) >= 2
            and sum(e["type"] == "analysis" for e in events) >= 20
        ),
        60,
        what="results and analyses flowing",
    )
    srv.proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert srv.proc.wait(30) == 0
    stopped_in = time.monotonic() - started
    listener.join(10)
    assert closed.get("code") in (1000, 1001, 1012), closed  # a close frame, not a drop
    assert stopped_in < 20

    db = sqlite3.connect(tmp_path / "data" / "vlm-monitor.db")
    stored = {
        (s, a, ts)
        for s, a, ts in db.execute("SELECT stream, analyzer, video_timestamp FROM analyses")
    }
    pushed = {
        (e["stream"], e["analyzer"], e["video_timestamp"])
        for e in events
        if e["type"] == "analysis"
    }
    assert pushed and pushed <= stored, f"{len(pushed - stored)} pushed analyses not stored"
    stored_results = {row[0] for row in db.execute("SELECT id FROM results")}
    pushed_results = {e["id"] for e in events if e["type"] == "result"}
    assert pushed_results and pushed_results <= stored_results
    assert "Traceback" not in srv.output(), srv.output()[-3000:]
