"""WebRTC live view (WHEP-style ``POST /whep/{stream}``) with one VP8 encoder per stream.

The stream's decoded frames are encoded once, by a ``SharedEncoder`` that runs while at least
one viewer watches; every viewer's RTP sender only packetizes the same packets (aiortc sends
pre-encoded ``av.Packet``s as they are). A new viewer waits for a keyframe, which it asks
for; a viewer that falls behind by a second of video drops to the next keyframe.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from vlm_monitor.aio import cancel_and_wait
from vlm_monitor.hub import StreamHub
from vlm_monitor.types import Frame
from vlm_monitor.webrtc.whip import OfferError, answer_offer

log = logging.getLogger("vlm_monitor.webrtc")
TIME_BASE = fractions.Fraction(1, 90000)
VIEWER_QUEUE = 30  # ~2 s at 15 fps
Packet = Any  # av.Packet (generic in PyAV's stubs, plain at run time)


class ViewerTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, encoder: SharedEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.queue: asyncio.Queue[Packet | None] = asyncio.Queue(VIEWER_QUEUE)
        self.waiting_for_key = True
        self.sent = 0
        self.dropped = 0

    def offer(self, packet: Packet) -> None:
        if self.waiting_for_key:
            if not packet.is_keyframe:
                return
            self.waiting_for_key = False
        try:
            self.queue.put_nowait(packet)
        except asyncio.QueueFull:  # too far behind: resume at the next keyframe
            self.dropped += 1
            self.waiting_for_key = True
            self.encoder.request_keyframe()

    async def recv(self) -> Packet:
        packet = await self.queue.get()
        if packet is None or self.readyState != "live":
            raise MediaStreamError
        self.sent += 1
        return packet

    def stop(self) -> None:
        super().stop()
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)


class SharedEncoder:
    def __init__(
        self, hub: StreamHub, stream_id: str, fps: float, bitrate: int, pool: ThreadPoolExecutor
    ) -> None:
        self.hub, self.stream_id, self.fps, self.bitrate, self.pool = (
            hub, stream_id, fps, bitrate, pool,
        )  # fmt: skip
        self.viewers: set[ViewerTrack] = set()
        self.frames_encoded = 0
        self.encode_ms = 0.0
        self._codec: Any = None
        self._force_key = True
        self._t0: float | None = None
        self._task: asyncio.Task[None] | None = None

    def request_keyframe(self) -> None:
        self._force_key = True

    def attach(self, viewer: ViewerTrack) -> None:
        self.viewers.add(viewer)
        self.request_keyframe()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"whep-encoder-{self.stream_id}")

    async def detach(self, viewer: ViewerTrack) -> bool:
        """True when that was the last viewer (the encoder has stopped)."""
        self.viewers.discard(viewer)
        if self.viewers or self._task is None:
            return not self.viewers
        await cancel_and_wait(self._task)
        self._task = None
        return True

    async def _run(self) -> None:
        sub = self.hub.subscribe(self.stream_id, "webrtc", "latest", frame_rate=self.fps)
        loop = asyncio.get_running_loop()
        try:
            async for frame in sub:
                packets = await loop.run_in_executor(self.pool, self._encode, frame)
                for packet in packets:
                    for viewer in list(self.viewers):
                        viewer.offer(packet)
        finally:
            self.hub.unsubscribe(sub)

    def _encode(self, frame: Frame) -> list[Packet]:
        started = time.perf_counter()
        width, height = frame.width, frame.height
        if height > 720:  # cap the view at 720p, even dimensions
            width, height = round(width * 720 / height) // 2 * 2, 720
        image = av.VideoFrame.from_ndarray(frame.bgr((width, height)), format="bgr24").reformat(
            format="yuv420p"
        )
        if self._t0 is None:
            self._t0 = frame.ts
        image.pts = int((frame.ts - self._t0) * 90000)
        image.time_base = TIME_BASE
        if self._codec is None or (self._codec.width, self._codec.height) != (width, height):
            self._codec = self._new_codec(width, height)
            self._force_key = True
        if self._force_key:
            image.pict_type = av.video.frame.PictureType.I
            self._force_key = False
        packets: list[Packet] = list(self._codec.encode(image))
        for packet in packets:
            packet.pts, packet.time_base = image.pts, TIME_BASE
        self.frames_encoded += 1
        self.encode_ms = (time.perf_counter() - started) * 1000
        return packets

    def _new_codec(self, width: int, height: int) -> Any:
        codec = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
        codec.bit_rate = self.bitrate
        codec.gop_size = max(1, round(self.fps * 2))  # a keyframe at least every 2 s
        codec.options = {
            "deadline": "realtime",
            "cpu-used": "8",
            "lag-in-frames": "0",
            "bufsize": str(self.bitrate),
            "minrate": str(self.bitrate),
            "maxrate": str(self.bitrate),
            "static-thresh": "1",
        }
        codec.thread_count = 1
        return codec

    def status(self) -> dict[str, Any]:
        return {
            "viewers": len(self.viewers),
            "frames_encoded": self.frames_encoded,
            "last_encode_ms": round(self.encode_ms, 2),
        }


@dataclass
class Viewer:
    stream_id: str
    resource_id: str
    pc: RTCPeerConnection
    track: ViewerTrack
    started_at: float = field(default_factory=time.time)


class WhepService:
    def __init__(self, hub: StreamHub, fps: float = 15.0, bitrate: int = 1_500_000) -> None:
        self.hub, self.fps, self.bitrate = hub, fps, bitrate
        self.encoders: dict[str, SharedEncoder] = {}
        self.viewers: dict[str, Viewer] = {}  # by resource id
        self.pool = ThreadPoolExecutor(2, thread_name_prefix="whep-encode")

    async def view(self, stream_id: str, offer_sdp: str) -> tuple[Viewer, str]:
        new = SharedEncoder(self.hub, stream_id, self.fps, self.bitrate, self.pool)
        track = ViewerTrack(self.encoders.get(stream_id) or new)
        pc = RTCPeerConnection()
        viewer = Viewer(stream_id, uuid.uuid4().hex, pc, track)

        def send_shared_vp8() -> None:
            video = [t for t in pc.getTransceivers() if t.kind == "video"]
            if not video:
                raise OfferError("the offer has no video transceiver")
            video[0].sender.replaceTrack(track)
            video[0].direction = "sendonly"
            codecs = RTCRtpSender.getCapabilities("video").codecs
            video[0].setCodecPreferences([c for c in codecs if c.mimeType == "video/VP8"])

        try:
            answer = await answer_offer(pc, offer_sdp, send_shared_vp8)
        except OfferError:
            await pc.close()
            raise
        # Only now, and shared with viewers that negotiated meanwhile: a refused offer
        # leaves no encoder behind, and concurrent viewers of a stream get the same one.
        encoder = track.encoder = self.encoders.setdefault(stream_id, new)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.end(viewer.resource_id)

        encoder.attach(track)
        self.viewers[viewer.resource_id] = viewer
        return viewer, answer

    async def end(self, resource_id: str) -> bool:
        viewer = self.viewers.pop(resource_id, None)
        if viewer is None:
            return False
        viewer.track.stop()
        encoder = self.encoders.get(viewer.stream_id)
        if encoder is not None and await encoder.detach(viewer.track):
            self.encoders.pop(viewer.stream_id, None)
        await viewer.pc.close()
        return True

    async def stop_all(self) -> None:
        for resource_id in list(self.viewers):
            await self.end(resource_id)
        await asyncio.to_thread(self.pool.shutdown, wait=True, cancel_futures=True)

    def status(self, stream_id: str) -> dict[str, Any] | None:
        encoder = self.encoders.get(stream_id)
        return None if encoder is None else encoder.status()
