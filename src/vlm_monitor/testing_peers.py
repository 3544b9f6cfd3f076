"""Camera peers for tests and benchmarks: the servers real cameras are, on loopback.

An IP camera's web server (MJPEG over HTTP, HLS files, HTTP basic auth), FFmpeg as a
single-connection MPEG-TS camera that comes back after its client leaves, GStreamer's RTSP
server (with basic or digest auth), and a raw TCP peer replaying bytes for broken cameras.
Media are made beforehand (``testing_zoo``); nothing here encodes with our own code.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from vlm_monitor.testing import ChildProcess, free_port, wait_until

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, where python3-gi (GStreamer) lives
BOUNDARY = "camframe"
CONTENT_TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t"}


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def with_credentials(url: str, user: str | None, password: str | None) -> str:
    if not user:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{user}:{password or ''}@{rest}"


class HttpCamera:
    """An IP camera's web server: ``/mjpeg`` is multipart/x-mixed-replace of ``jpegs`` at
    ``fps`` (looped, one part per frame, as such cameras send), anything else a file under
    ``root`` (an HLS playlist and its segments). With ``user`` every request needs HTTP basic
    auth, else 401."""

    def __init__(
        self,
        jpegs: list[bytes] | None = None,
        fps: float = 15,
        root: Path | None = None,
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        self.jpegs, self.fps, self.root = jpegs or [], fps, root
        self.user, self.password = user, password
        self.requests = 0
        self.closed = threading.Event()
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                camera._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def url(self, path: str, user: str | None = None, password: str | None = None) -> str:
        """The URL of ``path``; credentials default to the right ones."""
        if user is None:
            user, password = self.user, self.password
        return with_credentials(f"http://127.0.0.1:{self.port}/{path.lstrip('/')}", user, password)

    def close(self) -> None:
        self.closed.set()
        self._server.shutdown()
        self._server.server_close()

    def _authorised(self, handler: http.server.BaseHTTPRequestHandler) -> bool:
        if not self.user:
            return True
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return handler.headers.get("Authorization") == f"Basic {token}"

    def _serve(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        self.requests += 1
        if not self._authorised(handler):
            handler.send_response(401)
            handler.send_header("WWW-Authenticate", 'Basic realm="camera"')
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        path = handler.path.partition("?")[0]
        with contextlib.suppress(OSError):  # the client went away
            if path == "/mjpeg" and self.jpegs:
                self._mjpeg(handler)
            else:
                self._file(handler, path)

    def _mjpeg(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", f"multipart/x-mixed-replace;boundary={BOUNDARY}")
        handler.send_header("Cache-Control", "no-cache")
        handler.end_headers()
        period, due, i = 1.0 / self.fps, time.monotonic(), 0
        while not self.closed.is_set():
            jpeg = self.jpegs[i % len(self.jpegs)]
            head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}"
            handler.wfile.write(head.encode() + b"\r\n\r\n" + jpeg + b"\r\n")
            handler.wfile.flush()
            i += 1
            due += period
            self.closed.wait(max(0.0, due - time.monotonic()))

    def _file(self, handler: http.server.BaseHTTPRequestHandler, path: str) -> None:
        body, target = None, None
        if self.root is not None:
            target = (self.root / path.lstrip("/")).resolve()
            if target.is_relative_to(self.root.resolve()) and target.is_file():
                try:
                    body = target.read_bytes()
                except OSError:  # a segment deleted as we read it
                    body = None
        if body is None or target is None:
            handler.send_error(404)
            return
        handler.send_response(200)
        kind = CONTENT_TYPES.get(target.suffix, "application/octet-stream")
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


def read_jpegs(directory: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(directory.glob("*.jpg"))]


class FfmpegCamera:
    """``ffmpeg -re -stream_loop -1 -i MEDIA -c copy -f mpegts tcp://127.0.0.1:PORT?listen=1``:
    a single-connection camera (it serves one client and exits when that client leaves),
    restarted whenever it exits, the way a camera is there again after a reconnect.
    ``replace(media)`` is the camera rebooting with other settings (size, codec)."""

    def __init__(self, media: Path, log_dir: Path, port: int | None = None) -> None:
        self.media, self.log_dir = media, log_dir
        self.port = port or free_port()
        self.starts = 0
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._proc = self._spawn()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def wait_listening(self, timeout: float = 10) -> None:
        wait_until(lambda: self._is_listening(), timeout, 0.05, f"ffmpeg camera on {self.port}")

    def _is_listening(self) -> bool:
        # A probe connection would be the camera's one client: look at the socket table.
        want = f":{self.port:04X}"
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError), open(table) as f:
                for line in f.readlines()[1:]:
                    parts = line.split()
                    if parts[1].endswith(want) and parts[3] == "0A":
                        return True
        return False

    def _spawn(self) -> ChildProcess:
        self.starts += 1
        return ChildProcess(
            ["ffmpeg", "-v", "error", "-re", "-stream_loop", "-1", "-i", str(self.media),
             "-c", "copy", "-f", "mpegts", f"tcp://127.0.0.1:{self.port}?listen=1"],
            self.log_dir / f"ffmpeg-camera-{self.port}-{self.starts}.out",
        )  # fmt: skip

    def _watch(self) -> None:
        while not self._closed.wait(0.2):
            with self._lock:
                if not self._proc.alive() and not self._closed.is_set():
                    self._proc.stop()
                    self._proc = self._spawn()

    def replace(self, media: Path) -> None:
        with self._lock:
            self.media = media
            self._proc.stop()
            self._proc = self._spawn()

    def stop(self) -> None:
        self._closed.set()
        self._watcher.join(2)
        with self._lock:
            self._proc.stop()


class HlsCamera:
    """A live HLS camera: FFmpeg cuts ``media`` (looped, in real time) into 1 s segments with
    a sliding playlist, which an HttpCamera serves as ``/live.m3u8``."""

    def __init__(self, media: Path, workdir: Path) -> None:
        self.dir = workdir / f"hls-{free_port()}"
        self.dir.mkdir(parents=True)
        self._proc = ChildProcess(
            ["ffmpeg", "-v", "error", "-re", "-stream_loop", "-1", "-i", str(media), "-c", "copy",
             "-f", "hls", "-hls_time", "1", "-hls_list_size", "6",
             "-hls_flags", "delete_segments+omit_endlist", str(self.dir / "live.m3u8")],
            workdir / f"{self.dir.name}.out",
        )  # fmt: skip
        self.http = HttpCamera(root=self.dir)
        self.url = self.http.url("live.m3u8")

    def wait_ready(self, timeout: float = 15) -> None:
        def ready() -> bool:
            if not self._proc.alive():
                raise RuntimeError(f"ffmpeg hls exited:\n{self._proc.output()}")
            playlist = self.dir / "live.m3u8"
            return playlist.exists() and playlist.read_text().count("#EXTINF") >= 2

        wait_until(ready, timeout, 0.1, "hls playlist with two segments")

    def stop(self) -> None:
        self._proc.stop()
        self.http.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class GstRtspCamera:
    """GStreamer's RTSP server (``tests/support/rtsp_server.py``, run by Debian's Python):
    a live test pattern in H.264 or H.265, optionally with audio and basic/digest auth."""

    def __init__(
        self,
        script: Path,
        log_dir: Path,
        path: str = "cam",
        size: str = "640x360",
        fps: int = 15,
        codec: str = "h264",
        audio: bool = False,
        auth: str | None = None,
        user: str = "",
        password: str = "",
    ) -> None:
        self.port, self.path = free_port(), path
        self.user, self.password = user, password
        args = [SYSTEM_PYTHON, str(script), str(self.port), path, size, str(fps), "--codec", codec]
        if audio:
            args.append("--audio")
        if auth:
            args += ["--auth", auth, "--user", user, "--password", password]
        self._proc = ChildProcess(args, log_dir / f"rtsp-{self.port}.out")

    def wait_ready(self, timeout: float = 20) -> None:
        def ready() -> bool:
            if not self._proc.alive():
                raise RuntimeError(f"rtsp server exited:\n{self._proc.output()}")
            return "READY" in self._proc.output()

        wait_until(ready, timeout, 0.1, "rtsp server ready")

    def url(self, user: str | None = None, password: str | None = None) -> str:
        if user is None:
            user, password = self.user, self.password
        return with_credentials(f"rtsp://127.0.0.1:{self.port}/{self.path}", user, password)

    def stop(self) -> None:
        self._proc.stop()


def gst_available() -> bool:
    probe = "import gi; gi.require_version('GstRtspServer', '1.0')"
    try:
        return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode == 0
    except OSError:
        return False


Producer = Callable[[], Iterable[bytes]]


class ByteCamera:
    """A TCP camera that sends each client what ``produce()`` yields, then closes; set
    ``produce`` to change what the next clients get (a broken camera recovering)."""

    def __init__(self, produce: Producer) -> None:
        self.produce = produce
        self.clients = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self._closed = threading.Event()
        self._conns: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def switch(self, produce: Producer) -> None:
        """Serve ``produce`` from now on; current clients are dropped (the camera restarts)."""
        self.produce = produce
        for conn in list(self._conns):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.clients += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        self._conns.add(conn)
        try:
            with conn:
                for chunk in self.produce():
                    if self._closed.is_set():
                        return
                    if chunk:
                        conn.sendall(chunk)
                    else:
                        time.sleep(0.1)  # an empty chunk: hold the line, send nothing
        except OSError:
            pass
        finally:
            self._conns.discard(conn)

    def stop(self) -> None:
        self._closed.set()
        self._sock.close()
        for conn in list(self._conns):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


def paced(data: bytes, seconds: float, loop: bool = True, chunk: int = 8 * 1316) -> Iterator[bytes]:
    """``data`` (``seconds`` of media) in chunks at its own byte rate: a camera's pace."""
    rate = len(data) / seconds
    start = time.monotonic()
    sent = 0
    while True:
        for i in range(0, len(data), chunk):
            piece = data[i : i + chunk]
            yield piece
            sent += len(piece)
            delay = start + sent / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        if not loop:
            return
