"""WHIP ingest (RFC 9725) with aiortc: a browser or any WHIP client publishes a stream here.

``POST /whip/{stream}`` takes an SDP offer and answers 201 with the SDP answer and a
``Location`` for the session; ``DELETE`` on it ends the publish. The received video track's
frames go to the stream's inbox, read by its Source like any camera. One publisher per
stream at a time (like a camera's single connection). A publisher that vanishes without
DELETE is dropped when ICE fails or nothing arrives for ``publisher_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from vlm_monitor.webrtc.inbox import WhipInbox

log = logging.getLogger("vlm_monitor.webrtc")


class OfferError(ValueError):
    pass


async def answer_offer(
    pc: RTCPeerConnection, offer_sdp: str, prepare: Callable[[], None] | None = None
) -> str:
    """Takes a client's SDP offer, lets ``prepare`` set up the transceivers, returns the
    answer. Anything aiortc cannot use is an OfferError (the caller closes ``pc``)."""
    if "v=0" not in offer_sdp or "m=video" not in offer_sdp:
        raise OfferError("the offer is not an SDP offer with a video section")
    try:
        await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        if prepare is not None:
            prepare()
        await pc.setLocalDescription(await pc.createAnswer())
    except OfferError:
        raise
    except Exception as exc:  # aiortc's SDP parser raises many kinds on hostile input
        raise OfferError(f"cannot use this SDP offer: {type(exc).__name__}: {exc}") from None
    return str(pc.localDescription.sdp)


@dataclass
class Publish:
    stream_id: str
    resource_id: str
    pc: RTCPeerConnection
    inbox: WhipInbox
    started_at: float = field(default_factory=time.time)
    last_frame: float = field(default_factory=time.monotonic)
    frames: int = 0
    audio: bool = False
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def status(self) -> dict[str, Any]:
        return {
            "resource": self.resource_id,
            "started_at": self.started_at,
            "frames": self.frames,
            "audio": self.audio,
            "ice": self.pc.iceConnectionState,
        }


def restrict_ice(addresses: list[str] | None) -> None:
    """Offer only these host addresses as ICE candidates (aioice gathers every interface but
    loopback otherwise)."""
    if addresses is None:
        return
    import aioice.ice

    allowed = list(addresses)
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: allowed


class WhipService:
    def __init__(self, publisher_timeout_s: float) -> None:
        self.timeout = publisher_timeout_s
        self.publishes: dict[str, Publish] = {}  # by stream id
        self._lock = asyncio.Lock()

    async def publish(
        self, stream_id: str, inbox: WhipInbox, offer_sdp: str
    ) -> tuple[Publish, str]:
        """Returns the session and the SDP answer. Raises OfferError on a bad offer and
        RuntimeError when the stream already has a publisher."""
        async with self._lock:
            if stream_id in self.publishes:
                raise RuntimeError(f"stream {stream_id!r} already has a publisher")
            pc = RTCPeerConnection()
            session = Publish(stream_id, uuid.uuid4().hex, pc, inbox)
            try:
                answer = await self._negotiate(session, offer_sdp)
            except Exception:
                await pc.close()
                raise
            self.publishes[stream_id] = session
        inbox.begin()
        watchdog = asyncio.create_task(self._watch(session), name=f"whip-watch-{stream_id}")
        session.tasks.add(watchdog)
        log.info("whip publish started", extra={"fields": {"stream": stream_id}})
        return session, answer

    async def _negotiate(self, session: Publish, offer_sdp: str) -> str:
        pc = session.pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                task = asyncio.create_task(self._pump(session, track))
            else:
                session.audio = True
                task = asyncio.create_task(self._audio(session, track))
            session.tasks.add(task)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.end(
                    session.stream_id, session.resource_id, "connection " + pc.connectionState
                )

        return await answer_offer(pc, offer_sdp)

    async def _pump(self, session: Publish, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                session.frames += 1
                session.last_frame = time.monotonic()
                session.inbox.put(frame)
        except MediaStreamError:
            pass

    @staticmethod
    async def _audio(session: Publish, track: MediaStreamTrack) -> None:
        """Audio is read (so the peer's buffers never fill) and, as 16 kHz mono PCM, handed
        to realtime sessions listening to this stream (``/ws/video?source=``)."""
        resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if not session.inbox.audio_listeners or not isinstance(frame, av.AudioFrame):
                    continue
                for out in resampler.resample(frame):
                    session.inbox.publish_audio(out.to_ndarray().tobytes())

    async def _watch(self, session: Publish) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.timeout / 4))
            if time.monotonic() - session.last_frame > self.timeout:
                await self.end(session.stream_id, session.resource_id, "publisher timed out")
                return

    async def end(self, stream_id: str, resource_id: str, why: str) -> bool:
        session = self.publishes.get(stream_id)
        if session is None or session.resource_id != resource_id:
            return False
        del self.publishes[stream_id]
        session.inbox.end()
        current = asyncio.current_task()
        for task in session.tasks:
            if task is not current:
                task.cancel()
        await session.pc.close()
        log.info("whip publish ended", extra={"fields": {"stream": stream_id, "why": why}})
        return True

    async def stop_all(self) -> None:
        for stream_id, session in list(self.publishes.items()):
            await self.end(stream_id, session.resource_id, "server stopping")
