"""The test camera: MPEG-TS/H.264 of the synthetic scene over TCP, like the original system's
tcp_video_service.

One encoder thread renders and encodes each frame once; its output is cut per packet and fanned
out to every client. A client that joins mid-stream starts at the next key frame, which the
MPEG-TS muxer precedes with PAT/PMT, so any demuxer can pick the stream up. A client too slow
to keep up (its queue of chunks is full) is disconnected, as a real camera would drop it.
With ``single_client`` a second concurrent client is refused, like a real camera.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from vlm_monitor.camera.scene import SyntheticScene, make_scene

log = logging.getLogger("vlm_monitor.camera")

CLIENT_QUEUE_CHUNKS = 512  # about 17 s of 30 fps video; beyond that the client is too slow


class ChunkSink(io.RawIOBase):
    """Collects what a muxer writes, so each packet's bytes can be taken out after ``mux``."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.buf += data
        return len(data)


@dataclass
class CameraStats:
    connections_total: int = 0
    refused_total: int = 0
    active: int = 0
    frames_encoded: int = 0


class _Client:
    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(CLIENT_QUEUE_CHUNKS)
        self.synced = False  # True once it has been given a key frame


class TestCamera:
    """Asyncio TCP server; the encoder runs in a thread only while clients are connected."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8888,
        fps: float = 15,
        size: tuple[int, int] = (1280, 720),
        single_client: bool = False,
        bitrate: int = 2_000_000,
        ready_file: str | None = None,
        scene: SyntheticScene | None = None,
    ) -> None:
        self.host, self.port, self.fps, self.size = host, port, fps, size
        self.single_client = single_client
        self.bitrate = bitrate
        self.ready_file = ready_file  # gets the bound port once listening (for --port 0)
        self.stats = CameraStats()
        self._clients: set[_Client] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._has_clients = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._scene = scene or SyntheticScene(*size)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._thread = threading.Thread(
            target=self._encode_loop, name="camera-encoder", daemon=True
        )
        self._thread.start()
        if self.ready_file:
            await asyncio.to_thread(Path(self.ready_file).write_text, str(self.port))
        log.info(
            "camera listening",
            extra={
                "fields": {
                    "host": self.host,
                    "port": self.port,
                    "fps": self.fps,
                    "size": f"{self.size[0]}x{self.size[1]}",
                    "single_client": self.single_client,
                }
            },
        )

    async def stop(self) -> None:
        self._stop.set()
        self._has_clients.set()
        if self._server is not None:
            self._server.close()
        for client in list(self._clients):
            with contextlib.suppress(asyncio.QueueFull):
                client.queue.put_nowait(None)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = writer.get_extra_info("peername")[:2]
        peer = f"{host}:{port}"
        if self.single_client and self._clients:
            self.stats.refused_total += 1
            log.warning(
                "camera refused client: single-client camera is busy",
                extra={"fields": {"peer": peer, "refused_total": self.stats.refused_total}},
            )
            writer.close()
            return
        client = _Client(peer)
        self._clients.add(client)
        self.stats.connections_total += 1
        self.stats.active = len(self._clients)
        self._has_clients.set()
        log.info(
            "camera client connected",
            extra={
                "fields": {
                    "peer": peer,
                    "active": self.stats.active,
                    "total": self.stats.connections_total,
                }
            },
        )
        try:
            while (chunk := await client.queue.get()) is not None:
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._clients.discard(client)
            self.stats.active = len(self._clients)
            if not self._clients:
                self._has_clients.clear()
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            log.info(
                "camera client disconnected",
                extra={"fields": {"peer": peer, "active": self.stats.active}},
            )

    def _deliver(self, chunk: bytes, key: bool) -> None:
        """Runs on the loop: hands one packet's bytes to every client."""
        for client in list(self._clients):
            if not client.synced:
                if not key:
                    continue
                client.synced = True
            try:
                client.queue.put_nowait(chunk)
            except asyncio.QueueFull:
                log.warning("camera dropping slow client", extra={"fields": {"peer": client.peer}})
                self._clients.discard(client)
                client.queue.get_nowait()
                client.queue.put_nowait(None)

    def _encode_loop(self) -> None:
        assert self._loop is not None
        while not self._stop.is_set():
            self._has_clients.wait()
            if self._stop.is_set():
                return
            try:
                self._encode_session()
            except Exception:
                log.exception("camera encoder failed; restarting")
                time.sleep(0.5)

    def _encode_session(self) -> None:
        """Encodes from a fresh key frame until the last client leaves."""
        assert self._loop is not None
        sink = ChunkSink()
        width, height = self.size
        gop = max(1, round(self.fps))
        # PES lengths let the receiver's demuxer emit each frame as soon as its last byte
        # arrives instead of at the next frame's start (one frame interval of latency).
        options = {"flush_packets": "1", "omit_video_pes_length": "0"}
        out = av.open(sink, "w", format="mpegts", container_options=options, buffer_size=4096)
        try:
            # A VBV buffer caps every frame (key frames too) under the 64 KiB a PES length can
            # state; bigger frames would cost a receiver one frame interval of latency.
            vbv_kbit = min(self.bitrate // 1000, 480)
            stream = out.add_stream(
                "libx264",
                rate=round(self.fps),
                options={
                    "preset": "ultrafast",
                    "tune": "zerolatency",
                    "g": str(gop),
                    "x264-params": f"vbv-maxrate={self.bitrate // 1000}:vbv-bufsize={vbv_kbit}",
                },
            )
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.bit_rate = self.bitrate
            period = 1.0 / self.fps
            next_at = time.monotonic()
            index = 0
            while self._has_clients.is_set() and not self._stop.is_set():
                now = time.monotonic()
                if now < next_at:
                    time.sleep(next_at - now)
                elif now - next_at > 5 * period:
                    next_at = now  # fell far behind (machine busy): resync, do not burst
                next_at += period
                self.stats.frames_encoded += 1
                seq = self.stats.frames_encoded
                image = self._scene.render(seq, time.time())
                frame = av.VideoFrame.from_ndarray(image, format="bgr24")
                frame.pts = index
                index += 1
                for packet in stream.encode(frame):
                    out.mux(_with_trailing_aud(packet))
                    chunk = bytes(sink.buf)
                    sink.buf.clear()
                    self._loop.call_soon_threadsafe(self._deliver, chunk, packet.is_keyframe)
        finally:
            with contextlib.suppress(Exception):
                out.close()


# An access unit delimiter NAL. Appended to each frame, it starts the next access unit inside
# the same PES packet, so a receiver's H.264 parser can emit the frame at once instead of
# waiting for the next frame's bytes (one frame interval of latency, 67 ms at 15 fps).
_AUD = b"\x00\x00\x00\x01\x09\xf0"


def _with_trailing_aud(packet: Any) -> Any:
    out = av.Packet(bytes(packet) + _AUD)
    out.pts, out.dts, out.time_base = packet.pts, packet.dts, packet.time_base
    out.stream = packet.stream
    out.is_keyframe = packet.is_keyframe
    return out


def run_camera(
    host: str,
    port: int,
    fps: float,
    size: tuple[int, int],
    single_client: bool,
    ready_file: str | None = None,
    scene: str = "moving",
    bpm: float = 72.0,
) -> None:
    camera = TestCamera(
        host,
        port,
        fps,
        size,
        single_client,
        ready_file=ready_file,
        # H.264 flattens sub-level colour changes: the camera's face pulses at 1.5 %.
        scene=make_scene(*size, kind=scene, bpm=bpm, pulse=0.015),
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(camera.serve_forever())
