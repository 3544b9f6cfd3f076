"""Event clips: a short ring of each stream's encoded video packets, remuxed (not re-encoded)
into an MP4 that starts before the event did.

The ring is fed from the decoding thread, one append per packet (its bytes copied: the demuxer
reuses its buffers); clips are written in a thread. Sources that hand over decoded pictures
(synthetic://, whip://) have no packets, so their events have no clip.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av


@dataclass(frozen=True, slots=True)
class _Packet:
    data: bytes
    pts: int | None
    dts: int | None
    key: bool
    at: float  # unix seconds when it was demuxed


@dataclass(frozen=True, slots=True)
class _Format:
    codec: str
    width: int
    height: int
    time_base: Fraction


class PacketRing:
    """The last ``keep_s`` seconds of one stream, always starting at a keyframe."""

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self._lock = threading.Lock()
        self._packets: collections.deque[_Packet] = collections.deque()
        self.format: _Format | None = None

    def put(self, fmt: _Format, packet: _Packet) -> None:
        with self._lock:
            if fmt != self.format:  # a reconnect or a camera reconfigured: old packets won't mix
                self._packets.clear()
                self.format = fmt
            if not self._packets and not packet.key:
                return  # a clip cannot start without a keyframe
            self._packets.append(packet)
            # Drop a whole group of pictures once the next one alone still covers keep_s.
            horizon = packet.at - self.keep_s
            while len(self._packets) > 1:
                nxt = next((i for i, p in enumerate(self._packets) if i and p.key), None)
                if nxt is None or self._packets[nxt].at > horizon:
                    break
                for _ in range(nxt):
                    self._packets.popleft()

    def since(self, start: float) -> tuple[_Format | None, list[_Packet]]:
        """Packets from the last keyframe at or before ``start`` (unix seconds) to now."""
        with self._lock:
            packets = list(self._packets)
            fmt = self.format
        first = 0
        for i, p in enumerate(packets):
            if p.key and p.at <= start:
                first = i
        return fmt, packets[first:]


class PacketRings:
    """One ring per stream; ``put`` is the sources' packet callback (decoding threads)."""

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self._rings: dict[str, PacketRing] = {}
        self._formats: dict[int, _Format] = {}  # by id of the demuxer's stream object

    def put(self, stream_id: str, stream: Any, packet: Any) -> None:
        fmt = self._formats.get(id(stream))
        if fmt is None or len(self._formats) > 64:
            if len(self._formats) > 64:
                self._formats.clear()  # stream objects of closed connections
            ctx = stream.codec_context
            fmt = _Format(ctx.name, ctx.width, ctx.height, Fraction(stream.time_base))
            self._formats[id(stream)] = fmt
        ring = self._rings.get(stream_id)
        if ring is None:
            ring = self._rings.setdefault(stream_id, PacketRing(self.keep_s))
        ring.put(
            fmt, _Packet(bytes(packet), packet.pts, packet.dts, packet.is_keyframe, time.time())
        )

    # StreamManager hooks: a removed stream's packets go with it.
    def on_stream_added(self, config: Any) -> None:
        pass

    def on_stream_removed(self, stream_id: str) -> None:
        self._rings.pop(stream_id, None)

    def write(self, stream_id: str, start: float, path: Path) -> bool:
        """The MP4 from ``start`` (unix seconds, back to a keyframe) to now; False when there
        is nothing to write. Blocking: call from a thread."""
        ring = self._rings.get(stream_id)
        if ring is None:
            return False
        fmt, packets = ring.since(start)
        if fmt is None or not packets:
            return False
        tmp = path.with_name(f".{path.name}.tmp")
        with av.open(str(tmp), "w", format="mp4") as out:
            video = out.add_mux_stream(fmt.codec, width=fmt.width, height=fmt.height)
            video.time_base = fmt.time_base
            t0 = packets[0].at
            for p in packets:
                pkt = av.Packet(p.data)
                # Sources without timestamps get them from arrival times.
                fallback = round((p.at - t0) / fmt.time_base)
                pkt.pts = p.pts if p.pts is not None else fallback
                pkt.dts = p.dts if p.dts is not None else pkt.pts
                pkt.time_base = fmt.time_base
                pkt.is_keyframe = p.key
                pkt.stream = video
                out.mux(pkt)
        tmp.replace(path)
        return True
