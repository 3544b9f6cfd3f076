"""``vlm-monitor worker`` infers by default: the analyzers of its stream, as its own --config
lists them, run on frames it gets from the backend, and their results reach the backend's
listeners and store as the server's own would; the server runs none of them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from vlm_monitor import cli
from vlm_monitor.testing import ChildProcess, wait_until

TOKEN = "worker-token-0123456789"


@pytest.fixture
def face_camera(tmp_path: Path) -> Iterator[str]:
    """``vlm-monitor camera --scene face``: a real TCP camera with a face for emotion."""
    ready = tmp_path / "face-camera.port"
    cam = ChildProcess(
        [sys.executable, "-m", "vlm_monitor", "camera", "--port", "0", "--fps", "15",
         "--size", "640x360", "--scene", "face", "--ready-file", str(ready)],
        tmp_path / "face-camera.out",
        env={"VLM_MONITOR_LOG_DIR": str(tmp_path / "logs")},
    )  # fmt: skip

    def port() -> int | None:
        if not cam.alive():
            raise RuntimeError(f"camera exited:\n{cam.output()}")
        try:
            return int(ready.read_text())
        except (OSError, ValueError):
            return None

    yield f"tcp://127.0.0.1:{wait_until(port, 30, what='face camera listening')}"
    cam.stop()


def run_worker(tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vlm_monitor", "worker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "VLM_MONITOR_LOG_DIR": str(tmp_path / "logs")},
    )


def summary_of(out: subprocess.CompletedProcess) -> dict:
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith('{"worker_summary"')]
    assert lines, f"no summary:\n{out.stdout}\n{out.stderr[-3000:]}"
    return json.loads(lines[-1])["worker_summary"]


class EventListener(threading.Thread):
    """``/ws/events`` as a dashboard sees it, while the worker runs."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.events, self.stop = url, [], threading.Event()
        self.connected = threading.Event()

    def run(self) -> None:
        with connect(self.url, open_timeout=10) as ws:
            self.connected.set()
            while not self.stop.is_set():
                try:
                    self.events.append(json.loads(ws.recv(timeout=0.5)))
                except TimeoutError:
                    continue
                except ConnectionClosed:
                    return  # the server stopped (at the end of a test, passed or not)


def test_worker_runs_its_streams_analyzers_and_the_backend_publishes_them(
    server, face_camera, tmp_path
) -> None:
    srv = server({"server": {"api_token": TOKEN}, "streams": [{"id": "cam", "url": face_camera}]})
    worker_config = tmp_path / "worker.json"
    worker_config.write_text(
        json.dumps(
            {
                "server": {"api_token": TOKEN},
                "streams": [
                    {
                        "id": "cam",
                        "url": face_camera,
                        "analyzers": ["motion", {"name": "emotion", "fps": 5}],
                    }
                ],
            }
        )
    )
    ws_url = srv.url.replace("http", "ws", 1) + f"/ws/events?token={TOKEN}"
    listener = EventListener(ws_url)
    listener.start()
    assert listener.connected.wait(10)
    started = time.time()
    out = run_worker(
        tmp_path, "--backend-url", srv.url, "--stream", "cam",
        "--config", str(worker_config), "--duration", "8",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    summary = summary_of(out)
    emotion = summary["analyzers"]["emotion"]
    assert emotion["results"] >= 10 and emotion["errors"] == 0, summary
    assert summary["posted"] >= emotion["results"] and summary["refused"] == 0, summary
    assert summary["unsent"] == 0 and summary["frames"] > 0, summary

    with srv.client(TOKEN) as c:
        # Not the server's doing: it runs no analyzer on the stream.
        assert c.get("/api/analyzers").json()["streams"]["cam"] == {}
        rows = wait_until(
            lambda: (
                r := c.get("/api/analyses", params={"stream": "cam", "limit": 1000}).json()
            ) and len(r) >= summary["posted"] and r,
            10,
            what="the posted results stored",
        )  # fmt: skip
    assert {r["analyzer"] for r in rows} <= {"motion", "emotion"}
    emotions = [r for r in rows if r["analyzer"] == "emotion"]
    assert len(emotions) == emotion["results"]
    assert all(r["video_timestamp"] >= started - 1 and r["frame_seq"] > 0 for r in emotions)
    faces = [r["result"] for r in emotions if r["result"]["face_detected"]]
    assert len(faces) >= 0.8 * len(emotions), emotions[:3]
    assert all(r["dominant_emotion"] and 0 < r["confidence"] <= 1 for r in faces)
    assert all(0 <= r["latency_s"] < 5 and "session_id" in r for r in emotions)

    def pushed() -> list[dict]:
        return [e for e in listener.events if e["type"] == "analysis" and e["stream"] == "cam"]

    wait_until(lambda: len(pushed()) == len(rows), 10, what="every result pushed")
    listener.stop.set()
    listener.join(5)
    assert {e["frame_seq"] for e in pushed()} == {r["frame_seq"] for r in rows}


def test_worker_with_nothing_to_infer_exits_2_and_count_only_counts(server, tmp_path) -> None:
    srv = server({"streams": [{"id": "cam", "url": "synthetic://?fps=15&size=320x180"}]})
    out = run_worker(tmp_path, "--backend-url", srv.url, "--stream", "cam", "--duration", "2")
    assert out.returncode == 2 and "nothing to infer" in out.stderr, out.stderr
    assert "--count-only" in out.stderr and "no --config" in out.stderr

    cfg = tmp_path / "plain.json"
    cfg.write_text(json.dumps({"streams": [{"id": "cam", "url": "synthetic://"}]}))
    out = run_worker(tmp_path, "--backend-url", srv.url, "--config", str(cfg), "--duration", "2")
    assert out.returncode == 2, out.stderr
    assert f"stream 'cam' has no analyzers and no clips in {cfg}" in out.stderr
    other = ["--backend-url", srv.url, "--config", str(cfg), "--stream", "other"]
    out = run_worker(tmp_path, *other)
    assert out.returncode == 2 and f"stream 'other' is not in {cfg}" in out.stderr

    out = run_worker(
        tmp_path, "--count-only", "--backend-url", srv.url, "--stream", "cam",
        "--frame-rate", "5", "--duration", "3",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    summary = summary_of(out)
    assert summary["stream"] == "cam" and 5 <= summary["frames"] <= 20, summary
    assert summary["latency_p50_ms"] is not None and "analyzers" not in summary
    with srv.client() as c:
        assert c.get("/api/analyses", params={"stream": "cam"}).json() == []

    out = run_worker(tmp_path, "--count-only", "--clips", "--stream", "cam")
    assert out.returncode == 2 and "not allowed with" in out.stderr


def test_posted_analyses_are_checked(server, tmp_path) -> None:
    srv = server(
        {
            "server": {"api_token": TOKEN},
            "streams": [{"id": "cam", "url": "synthetic://?fps=5&size=320x180"}],
        }
    )
    now = time.time()
    one = {"stream": "cam", "analyzer": "motion", "frame_seq": 3, "video_timestamp": now,
           "result": {"level": 0.2, "moving": True, "boxes": []}}  # fmt: skip
    assert httpx.post(srv.url + "/api/analyses", json={"results": [one]}).status_code == 401
    with srv.client(TOKEN) as c:
        for body, status in (
            ({"results": [{**one, "stream": "nope"}]}, 404),
            ({"results": [{**one, "analyzer": "faces"}]}, 422),
            ({"results": []}, 422),
            ({"results": [{**one, "video_timestamp": "nan"}]}, 422),
            ({"results": [{**one, "result": {"x": "y" * 70000}}]}, 422),
            ({"results": [one], "extra": 1}, 422),
        ):
            r = c.post("/api/analyses", json=body)
            assert r.status_code == status, (body["results"][:1], r.text)
        nan = '{"results": [{"stream": "cam", "analyzer": "motion", "video_timestamp": 1, ' \
              '"result": {"level": NaN}}]}'  # fmt: skip
        r = c.post("/api/analyses", content=nan, headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and "NaN" in r.text
        assert c.get("/api/analyses").json() == []

        r = c.post(
            "/api/analyses", json={"results": [one, one, {**one, "video_timestamp": now + 1}]}
        )
        assert r.status_code == 202 and r.json() == {"accepted": 3}
        # Rows are written in batches by the storage writer: wait for both, then make sure
        # the repeated one never arrives.
        wait_until(lambda: len(c.get("/api/analyses").json()) >= 2, 10, what="stored")
        time.sleep(1.0)
        rows = c.get("/api/analyses").json()
        assert len(rows) == 2  # one row per (stream, analyzer, frame time)
        assert rows[-1]["result"] == one["result"] and rows[-1]["frame_seq"] == 3


def test_no_subcommand_says_which_to_use(capsys) -> None:
    assert cli.main(["--config", "site.yaml"]) == 2
    err = capsys.readouterr().err
    assert "a subcommand is needed: `vlm-monitor serve --config site.yaml`" in err
    assert "demo, camera, worker, stop" in err
    assert cli.main([]) == 2
    assert "`vlm-monitor serve --config F`" in capsys.readouterr().err
    out = subprocess.run(
        [sys.executable, "-m", "vlm_monitor", "--config=x.json"], capture_output=True, text=True
    )
    assert out.returncode == 2 and "vlm-monitor serve --config x.json" in out.stderr
