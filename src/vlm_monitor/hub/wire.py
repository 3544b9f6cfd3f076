"""Wire format of the frame push channel (``WS /internal/video/ws/{subscription_id}``).

Each binary WebSocket message is one frame: a 4-byte big-endian header length N, N bytes of
UTF-8 JSON ``{"stream", "seq", "ts", "width", "height"}`` (plus ``capture_ts``, when the frame
was shot on the media clock, from backends that know it), then the JPEG bytes.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

_LEN = struct.Struct(">I")
MAX_HEADER = 64 * 1024


@dataclass(frozen=True, slots=True)
class FrameMessage:
    stream: str
    seq: int
    ts: float  # unix seconds when the backend decoded the frame
    width: int
    height: int
    jpeg: bytes
    capture_ts: float | None = None  # unix seconds when it was shot (``Frame.capture_ts``)


def pack(msg: FrameMessage) -> bytes:
    head = {
        "stream": msg.stream,
        "seq": msg.seq,
        "ts": msg.ts,
        "width": msg.width,
        "height": msg.height,
    }
    if msg.capture_ts is not None:
        head["capture_ts"] = msg.capture_ts
    header = json.dumps(head).encode()
    return _LEN.pack(len(header)) + header + msg.jpeg


def unpack(data: bytes) -> FrameMessage:
    if len(data) < _LEN.size:
        raise ValueError("frame message shorter than its length prefix")
    (n,) = _LEN.unpack_from(data)
    if n > MAX_HEADER or _LEN.size + n > len(data):
        raise ValueError(f"frame message header length {n} is out of bounds")
    try:
        head = json.loads(data[_LEN.size : _LEN.size + n])
        return FrameMessage(
            str(head["stream"]),
            int(head["seq"]),
            float(head["ts"]),
            int(head["width"]),
            int(head["height"]),
            data[_LEN.size + n :],
            None if head.get("capture_ts") is None else float(head["capture_ts"]),
        )
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        raise ValueError(f"bad frame message header: {exc}") from None
