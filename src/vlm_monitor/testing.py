"""Test harness shipped with the package: free ports, and the real processes tests talk to.

Everything here starts real things (the test camera, the backend) as child processes on
loopback and cleans them up; nothing is mocked.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Any, timeout: float, interval: float = 0.1, what: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something truthy; raise TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the thing polled may not be up yet
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not met within {timeout} s (last error: {last_exc})")


class ChildProcess:
    """A child process whose combined output goes to a log file we can read at any time."""

    def __init__(
        self,
        args: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.args, self.log_path = args, log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode

    def wait(self, timeout: float) -> int:
        """Wait for a child that exits by itself; killed if it overstays ``timeout``."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._log.close()


def start_job_worker(
    redis_url: str, config: Path, name: str, log: Path, *extra: str
) -> ChildProcess:
    """``vlm-monitor worker --redis-url`` as a child process; ``extra``: e.g. ``--jobs clip``."""
    return ChildProcess(
        [sys.executable, "-m", "vlm_monitor", "worker", "--redis-url", redis_url,
         "--config", str(config), "--name", name, *extra],
        log,
    )  # fmt: skip


class CameraProcess(ChildProcess):
    """``vlm-monitor camera`` on a free port (known once it listens)."""

    def __init__(
        self,
        workdir: Path,
        fps: float = 15,
        size: str = "640x360",
        single_client: bool = False,
        port: int = 0,
        name: str = "camera",
    ) -> None:
        self.ready_file = workdir / f"{name}.port"
        self.ready_file.unlink(missing_ok=True)
        args = [
            sys.executable,
            "-m",
            "vlm_monitor",
            "camera",
            "--port",
            str(port),
            "--fps",
            str(fps),
            "--size",
            size,
            "--ready-file",
            str(self.ready_file),
        ]
        if single_client:
            args.append("--single-client")
        super().__init__(
            args, workdir / f"{name}.out", env={"VLM_MONITOR_LOG_DIR": str(workdir / "logs")}
        )
        try:
            self.port = int(wait_until(self._port, 30, what="camera listening"))
        except BaseException:
            self.kill()
            raise

    def _port(self) -> int | None:
        if not self.alive():
            raise RuntimeError(f"camera exited:\n{self.output()}")
        with contextlib.suppress(OSError, ValueError):
            return int(self.ready_file.read_text())
        return None

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def connections(self) -> int:
        return self.output().count("camera client connected")


class ServerProcess(ChildProcess):
    """``vlm-monitor serve`` with a config written to ``workdir``; ready when /health is ok."""

    def __init__(
        self,
        workdir: Path,
        config: dict[str, Any] | None = None,
        port: int | None = None,
        name: str = "server",
    ) -> None:
        self.port = port or free_port()
        cfg = dict(config or {})
        cfg["server"] = {
            "port": self.port,
            "data_dir": str(workdir / "data"),
            "log_dir": str(workdir / "logs"),
            **cfg.get("server", {}),
        }
        self.config_path = workdir / f"{name}.json"
        self.config_path.write_text(json.dumps(cfg))
        super().__init__(
            [sys.executable, "-m", "vlm_monitor", "serve", "--config", str(self.config_path)],
            workdir / f"{name}.out",
            env={"VLM_MONITOR_LOG_DIR": str(workdir / "logs")},
        )
        try:
            wait_until(self._healthy, 30, what="server healthy")
        except BaseException:
            self.kill()  # nobody holds it yet to stop it: a server that never got ready
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _healthy(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"server exited:\n{self.output()}")
        return httpx.get(self.url + "/health", timeout=1).status_code == 200

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, timeout=10, headers=headers)


CHROMIUM = "/usr/bin/chromium"  # Debian's, driven by Playwright (make test installs it)
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# Fake camera and microphone, no permission prompt, real host ICE candidates (not mDNS).
CHROMIUM_MEDIA_FLAGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]


@contextlib.contextmanager
def chromium(*extra_args: str) -> Iterator[Any]:
    """Headless Chromium driven by Playwright (a dev dependency); yields the browser."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError("chromium missing: run `make test` (scripts/install-os-deps.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_FLAGS, *extra_args]
        )
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="vlm-monitor-") as tmp:
        yield Path(tmp)
