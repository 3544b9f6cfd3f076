from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from vlm_monitor.testing import (
    CameraProcess,
    ChildProcess,
    ServerProcess,
    free_port,
    start_job_worker,
    wait_until,
)
from vlm_monitor.testing_peers import GstRtspCamera, gst_available

SUPPORT = Path(__file__).parent / "support"


@pytest.fixture
def camera(tmp_path: Path) -> Iterator[Callable[..., CameraProcess]]:
    started: list[CameraProcess] = []

    def start(**kwargs: object) -> CameraProcess:
        cam = CameraProcess(tmp_path, name=f"camera{len(started)}", **kwargs)  # type: ignore[arg-type]
        started.append(cam)
        return cam

    yield start
    for cam in started:
        cam.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(config: dict | None = None, port: int | None = None) -> ServerProcess:
        srv = ServerProcess(tmp_path, config, port=port, name=f"server{len(started)}")
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture
def rtsp_server(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Starts GStreamer's RTSP server; returns its rtsp:// URL (without credentials: ``auth``
    basic or digest asks for ``user``/``password``). `make test` installs it."""
    if not gst_available():
        pytest.fail("GStreamer RTSP server missing: run `make test` (scripts/install-os-deps.sh)")
    cameras: list[GstRtspCamera] = []

    def start(**kwargs: Any) -> str:
        camera = GstRtspCamera(SUPPORT / "rtsp_server.py", tmp_path, **kwargs)
        cameras.append(camera)
        camera.wait_ready()
        return camera.url(user="")

    yield start
    for camera in cameras:
        camera.stop()


@pytest.fixture
def ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        pytest.fail("ffmpeg missing: run `make test` (scripts/install-os-deps.sh)")
    return path


@pytest.fixture
def python() -> str:
    return sys.executable


SPEECH = "Hello, can you tell me what you see on the camera right now?"


@pytest.fixture(scope="session")
def speech(tmp_path_factory) -> bytes:
    """Real speech made offline: espeak-ng -> 16 kHz mono s16le."""
    espeak = shutil.which("espeak-ng")
    if espeak is None or shutil.which("ffmpeg") is None:
        pytest.fail("espeak-ng/ffmpeg missing: run `make test` (scripts/install-os-deps.sh)")
    tmp = tmp_path_factory.mktemp("speech")
    subprocess.run([espeak, "-v", "en", "-s", "160", "-w", str(tmp / "s.wav"), SPEECH], check=True)
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", str(tmp / "s.wav"), "-ar", "16000", "-ac", "1",
         "-f", "s16le", str(tmp / "s.pcm")],
        check=True,
    )  # fmt: skip
    return (tmp / "s.pcm").read_bytes()


@pytest.fixture
def speech_wav(speech, tmp_path) -> Path:
    """1 s of silence, the speech, 3 s of silence: a WAV for fake microphones."""
    wav = tmp_path / "speech.wav"
    pcm = bytes(32000) + speech + bytes(32000 * 3)
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-f", "s16le", "-ar", "16000", "-ac", "1",
         "-i", "-", str(wav)],
        input=pcm,
        check=True,
    )  # fmt: skip
    return wav


class RedisServer:
    def __init__(self, tmp_path) -> None:
        path = shutil.which("redis-server")
        if path is None:
            pytest.fail("redis-server missing: run `make test` (scripts/install-os-deps.sh)")
        self.path, self.tmp, self.port = path, tmp_path, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: ChildProcess | None = None
        self.start()

    def start(self) -> None:
        self.proc = ChildProcess(
            [self.path, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            self.tmp / f"redis-{time.monotonic_ns()}.out",
        )  # fmt: skip
        wait_until(lambda: redis.Redis.from_url(self.url).ping(), 10, what="redis up")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def job_worker(tmp_path, redis_server):
    """Starts `vlm-monitor worker --redis-url` processes; all are stopped at the end."""
    started: list[ChildProcess] = []

    def start(name: str, *extra: str, config: dict | None = None) -> ChildProcess:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(config or {}))
        proc = start_job_worker(redis_server.url, path, name, tmp_path / f"{name}.out", *extra)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
