"""The commands a newcomer runs: demo (with --duration), stop, camera refusing a 2nd client."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time

import httpx

from vlm_monitor.testing import ChildProcess, free_port, wait_until


def test_demo_serves_a_live_camera_then_exits_cleanly(tmp_path) -> None:
    port = free_port()
    demo = ChildProcess(
        [
            sys.executable,
            "-m",
            "vlm_monitor",
            "demo",
            "--port",
            str(port),
            "--duration",
            "12",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        tmp_path / "demo.out",
        env={"VLM_MONITOR_LOG_DIR": str(tmp_path / "logs")},
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: f"open {url}/" in demo.output(), 30, what="demo prints its URL")
    st = wait_until(
        lambda: (s := httpx.get(url + "/api/streams/demo").json())["state"] == "live" and s,
        30,
        what="demo stream live",
    )
    assert st["width"] == 1280
    assert httpx.get(url + "/").text.count("vlm-monitor") >= 1
    assert (tmp_path / "data" / "run" / "camera.pid").exists()
    assert demo.wait(40) == 0, demo.output()
    assert not list((tmp_path / "data" / "run").glob("*.pid"))
    assert (tmp_path / "logs" / "demo.log").stat().st_size > 0
    assert (tmp_path / "logs" / "camera.log").stat().st_size > 0


def test_stop_ends_a_running_demo(tmp_path) -> None:
    port = free_port()
    data = tmp_path / "data"
    demo = ChildProcess(
        [sys.executable, "-m", "vlm_monitor", "demo", "--port", str(port), "--data-dir", str(data)],
        tmp_path / "demo.out",
        env={"VLM_MONITOR_LOG_DIR": str(tmp_path / "logs")},
    )
    wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200, 30)
    camera_pid = int((data / "run" / "camera.pid").read_text())
    out = subprocess.run(
        [sys.executable, "-m", "vlm_monitor", "stop", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0 and "stopped" in out.stdout
    assert demo.wait(30) == 0, demo.output()
    wait_until(lambda: not _alive(camera_pid), 10, what="camera process gone")
    again = subprocess.run(
        [sys.executable, "-m", "vlm_monitor", "stop", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "nothing to stop" in again.stdout


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_single_client_camera_refuses_a_second_client(camera) -> None:
    cam = camera(size="640x360", single_client=True)
    first = socket.create_connection(("127.0.0.1", cam.port))
    first.settimeout(5)
    assert first.recv(188)[:1] == b"\x47"  # MPEG-TS sync byte
    second = socket.create_connection(("127.0.0.1", cam.port))
    second.settimeout(5)
    assert second.recv(188) == b""  # closed at once
    second.close()
    wait_until(lambda: "refused" in cam.output(), 5)
    first.close()
    time.sleep(0.3)
    third = socket.create_connection(("127.0.0.1", cam.port))
    third.settimeout(5)
    assert third.recv(188)[:1] == b"\x47"  # free again once the first left
    third.close()
    assert re.findall(r"total=(\d+)", cam.output())[-1] == "2"


def test_camera_serves_many_clients_by_default(camera) -> None:
    cam = camera(size="640x360")
    socks = [socket.create_connection(("127.0.0.1", cam.port)) for _ in range(3)]
    for s in socks:
        s.settimeout(5)
        assert s.recv(188)[:1] == b"\x47"
        s.close()


def test_worker_takes_the_original_stream_tcp_config(server, tmp_path) -> None:
    import json

    srv = server({"streams": [{"id": "cam", "url": "synthetic://?fps=15&size=640x360"}]})
    cfg = tmp_path / "config.json"
    cfg.write_text(
        json.dumps(
            {
                "stream": {
                    "type": "tcp",
                    "id": "cam",
                    "tcp": {
                        "host": "127.0.0.1",
                        "port": 1,
                        "use_backend_client": True,
                        "backend_url": srv.url,
                        "frame_rate": 4,
                    },
                }
            }
        )
    )
    command = ["worker", "--count-only", "--config", str(cfg), "--duration", "4"]
    out = subprocess.run(
        [sys.executable, "-m", "vlm_monitor", *command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])["worker_summary"]
    assert summary["stream"] == "cam" and 6 <= summary["frames"] <= 18
