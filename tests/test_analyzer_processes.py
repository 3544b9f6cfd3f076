"""Analyzers in analyzer processes (``analysis.processes``): real H.264 face streams read by a
real server, its analyzers run in child processes on frames in shared memory; a killed
process is restarted with its streams; nothing is left behind at stop."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import httpx
import psutil

from vlm_monitor.analyzers import process_main
from vlm_monitor.testing import wait_until
from vlm_monitor.testing_zoo import FACE_BPM, encode_frames, scene_frames, x264

SHM = Path("/dev/shm")
ANALYZERS = [
    {"name": "emotion", "fps": 5},
    {"name": "heart_rate", "fps": 15},
    {"name": "attention", "fps": 5},
]


def bpm_readings(http: httpx.Client, stream: str, since: float = 0.0) -> list[float]:
    rows = http.get(
        "/api/analyses", params={"stream": stream, "analyzer": "heart_rate", "limit": 100}
    ).json()
    return [
        r["result"]["bpm"]
        for r in rows
        if r["result"]["bpm"] is not None and r["video_timestamp"] >= since
    ]


def test_analyzers_run_in_processes_survive_a_killed_one_and_leave_nothing(
    server, tmp_path: Path
) -> None:
    clip = tmp_path / "face.mp4"  # 10 s: whole pulse and sway periods, so the loop is seamless
    encode_frames(scene_frames("face", (640, 360), 15, 10), 15, [*x264(15), str(clip)])
    orphan = SHM / "vlm-monitor-999999999-0-gone-1-0"  # of a server killed before cleaning up
    orphan.write_bytes(b"\0" * 64)
    srv = server(
        {
            "analysis": {"processes": 2},
            "streams": [
                {"id": sid, "url": f"file://{clip}", "analyzers": ANALYZERS} for sid in ("a", "b")
            ],
        }
    )
    assert not orphan.exists()
    with srv.client() as http:
        procs = http.get("/api/analyzers").json()["processes"]
        assert [p["alive"] for p in procs] == [True, True]
        assert sorted(s for p in procs for s in p["streams"]) == ["a", "b"]
        assert all(len(p["streams"]) == 1 for p in procs)  # one stream each
        children = {c.pid for c in psutil.Process(srv.proc.pid).children(recursive=True)}
        assert {p["pid"] for p in procs} <= children

        # The pulse through the loop of the file (its presentation times restart each 10 s).
        wait_until(
            lambda: all(len(bpm_readings(http, s)) >= 3 for s in "ab"), 60, what="3 readings each"
        )
        for sid in "ab":
            assert all(abs(b - FACE_BPM) <= 3 for b in bpm_readings(http, sid)), sid
        status = http.get("/api/analyzers").json()["streams"]["a"]
        where = {a["where"] for a in status.values()}
        assert len(where) == 1 and where.pop().startswith("process ")
        emotion = http.get(
            "/api/analyses", params={"stream": "a", "analyzer": "emotion", "limit": 1}
        ).json()[0]["result"]
        assert emotion["face_detected"] and emotion["dominant_emotion"] == "happy"

        victim = next(p for p in procs if "a" in p["streams"])
        os.kill(victim["pid"], signal.SIGKILL)
        killed_at = time.time()

        def restarted() -> dict | None:
            p = http.get("/api/analyzers").json()["processes"][victim["index"]]
            return p if p["alive"] and p["restarts"] == 1 and p["pid"] != victim["pid"] else None

        again = wait_until(restarted, 30, what="the killed analyzer process restarted")
        assert again["streams"] == ["a"]
        # Its stream is analysed again from scratch: a new pulse window, new readings.
        wait_until(
            lambda: len(bpm_readings(http, "a", since=killed_at)) >= 1, 60, what="new readings"
        )
        assert all(abs(b - FACE_BPM) <= 3 for b in bpm_readings(http, "a", since=killed_at))
        pids = {p["pid"] for p in http.get("/api/analyzers").json()["processes"]}

        assert list(SHM.glob(f"vlm-monitor-{srv.proc.pid}-*-b-*"))
        assert http.delete("/api/streams/b").status_code in (200, 204)
        wait_until(
            lambda: all("b" not in p["streams"] for p in http.get("/api/analyzers").json()[
                "processes"]), 10, what="b off its process"
        )  # fmt: skip
        assert not list(SHM.glob(f"vlm-monitor-{srv.proc.pid}-*-b-*"))

    server_pid = srv.proc.pid
    assert srv.stop() == 0
    assert not [pid for pid in pids if psutil.pid_exists(pid)]
    assert not list(SHM.glob(f"vlm-monitor-{server_pid}-*"))


def test_an_analyzer_the_process_cannot_build_fails_its_jobs_not_the_process(
    tmp_path: Path,
) -> None:
    """A real analyzer process driven over its pipe: a stream whose analyzers cannot be built
    there answers each job with why, and the process serves the next one."""
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    worker = ctx.Process(target=process_main.main, args=(theirs,), daemon=True)
    worker.start()
    frame = tmp_path / "frame"
    frame.write_bytes(bytes(64 * 48 * 3))
    ours.send(("add", "bad", [{"name": "emotion", "params": {"no_such_param": 1}}]))
    ours.send(("add", "good", [{"name": "motion"}]))
    ours.send(("batch", [
        ("job", job, stream, "emotion" if stream == "bad" else "motion",
         str(frame), 64, 48, 1, 1.0, 1.0, 64, 48)
        for job, stream in ((1, "bad"), (2, "good"))
    ]))  # fmt: skip
    replies = {}
    while len(replies) < 2:  # the batch's answers, together or a few at a time
        assert ours.poll(30)
        kind, answers = ours.recv()
        assert kind == "done"
        replies.update({job: (payload, error) for job, payload, error, _busy in answers})
    assert replies[1][0] is None and "cannot run in an analyzer process" in replies[1][1]
    assert replies[2][1] is None  # the motion analyzer ran: the first frame, no result yet
    ours.send(("stop",))
    worker.join(10)
    assert worker.exitcode == 0
