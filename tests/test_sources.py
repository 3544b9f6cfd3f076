"""Sources against real peers: the test camera process, ffmpeg files, hostile TCP servers, RTSP."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vlm_monitor.camera import strip
from vlm_monitor.config import StreamConfig
from vlm_monitor.hub import StreamHub
from vlm_monitor.sources.source import Source
from vlm_monitor.testing import free_port, wait_until
from vlm_monitor.testing_peers import ByteCamera
from vlm_monitor.types import StreamState


class Harness:
    def __init__(self, url: str, **kwargs: object) -> None:
        self.hub = StreamHub()
        self.states: list[str] = []
        self.sub = self.hub.subscribe("s", "test", "ring", capacity=1000)
        self.config = StreamConfig(id="s", url=url, **kwargs)  # type: ignore[arg-type]
        self.source = Source(
            self.config, self.hub.publish, lambda s: self.states.append(str(s.state))
        )
        self.source.start()

    def wait_state(self, state: str, timeout: float = 20) -> None:
        wait_until(
            lambda: self.source.state == state,
            timeout,
            what=f"state {state} (states so far {self.states}, error {self.source.last_error})",
        )


@pytest.fixture
def harness() -> Iterator[list[Harness]]:
    made: list[Harness] = []
    yield made
    for h in made:
        h.source.stop()
        assert h.source.state == StreamState.STOPPED or h.source.state == StreamState.FAILED


def start(made: list[Harness], url: str, **kwargs: object) -> Harness:
    h = Harness(url, **kwargs)
    made.append(h)
    return h


def test_synthetic_source(harness: list[Harness]) -> None:
    h = start(harness, "synthetic://?fps=20&size=640x360")
    h.wait_state("live", 5)
    time.sleep(1.5)
    st = h.source.status()
    assert 15 <= st["fps_in"] <= 25
    assert (st["width"], st["height"]) == (640, 360)
    assert (st["codec"], st["rotation"]) == ("rawvideo", 0)
    frame = h.sub.get(1)
    assert frame is not None and strip.read(frame.bgr()) is not None


def test_tcp_camera_frames_carry_the_strip(harness: list[Harness], camera) -> None:
    cam = camera(size="1280x720", fps=15)
    h = start(harness, cam.url)
    h.wait_state("live")
    frames = [h.sub.get(5) for _ in range(10)]
    assert all(f is not None for f in frames)
    decoded = [strip.read(f.bgr()) for f in frames]
    assert all(d is not None for d in decoded)
    seqs = [d[0] for d in decoded]
    assert seqs == sorted(seqs) and len(set(seqs)) == 10
    latency = [f.ts - d[1] for f, d in zip(frames, decoded, strict=True)]
    assert all(-0.05 < lat < 2.0 for lat in latency)
    assert frames[0].bgr((640, 360)).shape == (360, 640, 3)
    assert h.source.status()["transport"] == "tcp"


@pytest.fixture
def clip(tmp_path: Path, ffmpeg: str) -> Path:
    path = tmp_path / "clip.mp4"
    subprocess.run(
        [
            ffmpeg,
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=15",
            "-t",
            "2",
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            str(path),
        ],
        check=True,
    )
    return path


def test_file_source_loops_at_native_rate(harness: list[Harness], clip: Path) -> None:
    h = start(harness, f"file://{clip}")
    h.wait_state("live", 5)
    time.sleep(4)
    n = h.source.frames_in
    assert 45 <= n <= 80  # ~4 s at 15 fps: it looped (the file has 30 frames) and was paced
    assert (h.source.status()["codec"], h.source.status()["rotation"]) == ("h264", 0)


def test_file_source_without_loop_stops(harness: list[Harness], clip: Path) -> None:
    h = start(harness, f"file://{clip}", loop=False)
    h.wait_state("stopped", 10)
    assert h.source.frames_in == 30 and h.source.last_error == "end of file"


def test_garbage_bytes_are_counted_not_fatal(harness: list[Harness]) -> None:
    def garbage() -> Iterator[bytes]:
        for _ in range(400):
            yield os.urandom(4096)
            time.sleep(0.005)

    srv = ByteCamera(garbage)
    try:
        h = start(
            harness,
            f"tcp://127.0.0.1:{srv.port}",
            open_timeout_s=2,
            stall_timeout_s=2,
            reconnect={"initial_s": 0.1, "max_s": 0.5},
        )
        wait_until(lambda: h.source.decode_errors >= 2, 30, what="decode errors counted")
        assert h.source.state in ("connecting", "reconnecting")
        assert h.source.frames_in == 0 and srv.clients >= 2
    finally:
        srv.stop()


def test_connected_but_silent_peer_is_reconnected(harness: list[Harness], camera) -> None:
    """A peer that sends a valid stream and then goes quiet without closing (a stall)."""
    cam = camera(size="640x360", fps=15)
    frozen = threading.Event()

    def relay() -> Iterator[bytes]:
        with socket.create_connection(("127.0.0.1", cam.port)) as up:
            while True:
                if frozen.is_set():
                    time.sleep(0.1)  # hold the connection open, send nothing
                    continue
                data = up.recv(65536)
                if not data:
                    return
                yield data

    srv = ByteCamera(relay)
    try:
        h = start(
            harness,
            f"tcp://127.0.0.1:{srv.port}",
            stall_timeout_s=1.5,
            reconnect={"initial_s": 0.1, "max_s": 0.5},
        )
        h.wait_state("live")
        frozen.set()
        h.wait_state("reconnecting", 6)
        assert h.source.reconnects >= 1
        frozen.clear()
        h.wait_state("live", 20)
    finally:
        srv.stop()


def test_unreachable_host_reconnects_then_fails(harness: list[Harness]) -> None:
    port = free_port()  # nothing listens there
    h = start(
        harness,
        f"tcp://127.0.0.1:{port}",
        open_timeout_s=1,
        reconnect={"initial_s": 0.05, "max_s": 0.2, "max_attempts": 3},
    )
    h.wait_state("failed", 15)
    assert h.states[:2] == ["connecting", "reconnecting"]
    assert h.states[-1] == "failed"
    assert h.source.reconnects == 2 and "gave up after 3 attempts" in h.source.last_error


def test_first_connection_failure_is_retried(harness: list[Harness], camera) -> None:
    port = free_port()
    h = start(
        harness,
        f"tcp://127.0.0.1:{port}",
        open_timeout_s=1,
        reconnect={"initial_s": 0.2, "max_s": 0.5},
    )
    h.wait_state("reconnecting", 10)
    camera(size="640x360", port=port)
    h.wait_state("live", 20)


@pytest.mark.rtsp
@pytest.mark.parametrize("transport", ["tcp", "auto", "udp"])
def test_rtsp_source(harness: list[Harness], rtsp_server, transport: str) -> None:
    url = rtsp_server(path=f"cam-{transport}")
    h = start(harness, url, transport=transport, open_timeout_s=10)
    h.wait_state("live", 30)
    assert h.sub.get(5) is not None
    st = h.source.status()
    assert (st["width"], st["height"]) == (640, 360)
    assert st["transport"] == ("tcp" if transport == "auto" else transport)


@pytest.mark.rtsp
@pytest.mark.parametrize("auth", ["basic", "digest"])
def test_rtsp_credentials_in_the_url(harness: list[Harness], rtsp_server, auth: str) -> None:
    url = rtsp_server(path=f"auth-{auth}", auth=auth, user="viewer", password="pa55-word")
    fast = {"open_timeout_s": 10, "reconnect": {"initial_s": 0.2, "max_s": 1}}
    good = start(harness, url.replace("rtsp://", "rtsp://viewer:pa55-word@"), **fast)
    wrong = start(harness, url.replace("rtsp://", "rtsp://viewer:wrong-pw@"), **fast)
    anonymous = start(harness, url, **fast)
    good.wait_state("live", 30)
    wrong.wait_state("reconnecting", 30)
    anonymous.wait_state("reconnecting", 30)
    assert wrong.source.last_error == "401 Unauthorized: wrong camera user or password"
    assert anonymous.source.last_error.startswith("401 Unauthorized: the camera wants a user")
    # The camera's answer: UDP would get the same one, so auto does not try it.
    assert wrong.source.transport == "tcp"
    st = wrong.source.status()
    assert "wrong-pw" not in str(st) and st["url"].startswith("rtsp://viewer:***@")


def test_frames_delivered_in_bursts_keep_the_cameras_spacing(
    harness: list[Harness], tmp_path: Path, ffmpeg: str
) -> None:
    """A camera (or a busy network) that delivers a second of frames at once: arrival times
    bunch, but each frame's capture time keeps the camera's 1/15 s spacing, which heart rate
    and the hub's rate limits read."""
    ts_file = tmp_path / "clip.ts"
    subprocess.run(
        [ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15", "-t", "6",
         "-c:v", "libx264", "-g", "15", "-bf", "0", "-f", "mpegts", str(ts_file)],
        check=True,
    )  # fmt: skip
    data = ts_file.read_bytes()

    def bursts() -> Iterator[bytes]:
        per_second = len(data) // 6
        for i in range(0, len(data), per_second):
            yield data[i : i + per_second]
            time.sleep(1.0)

    srv = ByteCamera(bursts)
    try:
        h = start(harness, srv.url, loop=False)
        wait_until(lambda: h.source.frames_in >= 60, 20, what="60 frames")
        frames = []
        while (f := h.sub.get(timeout=0)) is not None:
            frames.append(f)
        arrival = [b.ts - a.ts for a, b in itertools.pairwise(frames)]
        shot = [b.capture_ts - a.capture_ts for a, b in itertools.pairwise(frames)]
        assert sum(gap < 0.01 for gap in arrival) > len(arrival) / 2  # they came bunched
        assert all(abs(gap - 1 / 15) < 0.002 for gap in shot), shot
        assert frames[0].capture_ts == pytest.approx(frames[0].ts, abs=0.01)
    finally:
        srv.stop()
