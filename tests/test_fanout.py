"""One connection to a single-client camera, whatever the number of consumers."""

from __future__ import annotations

import json
import sys
import threading
import time

import httpx

from vlm_monitor.testing import ChildProcess, wait_until


def _worker(srv, tmp_path, i: int, duration: float) -> ChildProcess:
    return ChildProcess(
        [
            sys.executable,
            "-m",
            "vlm_monitor",
            "worker",
            "--count-only",
            "--backend-url",
            srv.url,
            "--stream",
            "cam",
            "--frame-rate",
            "5",
            "--name",
            f"w{i}",
            "--duration",
            str(duration),
        ],
        tmp_path / f"worker{i}.out",
        env={"VLM_MONITOR_LOG_DIR": str(tmp_path / "logs")},
    )


def _summary(proc: ChildProcess) -> dict:
    for line in proc.output().splitlines():
        if line.startswith('{"worker_summary"'):
            return json.loads(line)["worker_summary"]
    raise AssertionError(f"no summary in worker output:\n{proc.output()}")


class MjpegViewer(threading.Thread):
    def __init__(self, url: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url, self.stop, self.frames, self.error = url, stop, 0, None

    def run(self) -> None:
        try:
            with httpx.stream("GET", self.url, timeout=10) as r:
                for chunk in r.iter_bytes():
                    self.frames += chunk.count(b"--vlmframe")
                    if self.stop.is_set():
                        return
        except Exception as exc:
            self.error = exc


class Poller(threading.Thread):
    def __init__(self, base: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.base, self.stop, self.frames, self.error = base, stop, 0, None

    def run(self) -> None:
        seq = 0
        try:
            with httpx.Client(base_url=self.base, timeout=10) as c:
                while not self.stop.is_set():
                    r = c.get(
                        "/internal/video/latest-frame",
                        params={"stream": "cam", "after_seq": seq, "timeout": 2},
                    )
                    if r.status_code == 200:
                        assert int(r.headers["X-Frame-Seq"]) > seq
                        seq = int(r.headers["X-Frame-Seq"])
                        self.frames += 1
        except Exception as exc:
            self.error = exc


def test_single_client_camera_feeds_every_consumer(camera, server, tmp_path) -> None:
    cam = camera(size="640x360", fps=15, single_client=True)
    srv = server({"streams": [{"id": "cam", "url": cam.url}]})
    stop = threading.Event()
    workers = [_worker(srv, tmp_path, i, 8) for i in range(3)]
    viewers = [MjpegViewer(srv.url + "/api/streams/cam/mjpeg", stop) for _ in range(2)]
    poller = Poller(srv.url, stop)
    for t in (*viewers, poller):
        t.start()
    for w in workers:
        assert w.wait(60) == 0
    stop.set()
    for t in (*viewers, poller):
        t.join(10)

    assert cam.connections() == 1, cam.output()
    assert "refused" not in cam.output()
    for w in workers:
        summary = _summary(w)
        assert summary["frames"] >= 20, summary  # ~5 fps for 8 s
        assert summary["fps"] <= 6
    for v in viewers:
        assert v.error is None and v.frames >= 30
    assert poller.error is None and poller.frames >= 30
    with srv.client() as c:
        assert c.get("/api/streams/cam").json()["reconnects"] == 0


def test_camera_restart_recovers_without_hurting_consumers(camera, server, tmp_path) -> None:
    cam = camera(size="640x360", fps=15, single_client=True)
    srv = server(
        {
            "streams": [
                {
                    "id": "cam",
                    "url": cam.url,
                    "stall_timeout_s": 2,
                    "reconnect": {"initial_s": 0.2, "max_s": 1},
                }
            ]
        }
    )
    c = srv.client()
    wait_until(lambda: c.get("/api/streams/cam").json()["state"] == "live", 20)
    worker = _worker(srv, tmp_path, 0, 25)
    stop = threading.Event()
    viewer = MjpegViewer(srv.url + "/api/streams/cam/mjpeg", stop)
    viewer.start()
    time.sleep(2)
    port = cam.port
    cam.kill()
    wait_until(lambda: c.get("/api/streams/cam").json()["state"] == "reconnecting", 10)
    restarted = camera(size="640x360", fps=15, single_client=True, port=port)
    t0 = time.monotonic()
    st = wait_until(lambda: (s := c.get("/api/streams/cam").json())["state"] == "live" and s, 20)
    recovery_s = time.monotonic() - t0
    assert st["reconnects"] >= 1 and recovery_s < 15
    frames_before = viewer.frames
    time.sleep(2)
    assert viewer.frames > frames_before  # the same MJPEG connection goes on
    assert worker.wait(60) == 0
    stop.set()
    viewer.join(10)
    assert viewer.error is None
    summary = _summary(worker)
    assert summary["frames"] > 40
    assert restarted.connections() == 1
    c.close()
