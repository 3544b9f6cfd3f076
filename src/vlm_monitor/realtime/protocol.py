"""The ``/ws/video`` client messages of the original chat service's protocol, validated. Every
problem is a ProtocolError with a code the browser can act on; the session answers it with an
``error`` event and goes on."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

import cv2
import numpy as np

from vlm_monitor.config import RealtimeConfig
from vlm_monitor.types import Frame

MAX_HEIGHT = 720
JPEG_QUALITY = 70


class ProtocolError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def event(self) -> dict[str, str]:
        return {"type": "error", "code": self.code, "message": str(self)}


@dataclass(frozen=True)
class ClientMessage:
    type: str  # "video" | "audio" | "close"
    data: bytes = b""


def parse(raw: str | bytes, limits: RealtimeConfig, want_video: bool = True) -> ClientMessage:
    """``want_video=False``: a video message is returned without its (unread) data, for
    frames over the forwarding rate, which are dropped anyway."""
    if isinstance(raw, bytes):
        raise ProtocolError("bad_message", "send JSON text messages, not binary ones")
    if len(raw) > limits.max_message_bytes:
        raise ProtocolError("message_too_large", f"message over {limits.max_message_bytes} bytes")
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ProtocolError("bad_json", f"not JSON: {exc.msg} at {exc.pos}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
        raise ProtocolError("bad_message", 'a message is an object with a "type"')
    kind = doc["type"]
    if kind == "close":
        return ClientMessage("close")
    if kind not in ("video", "audio"):
        raise ProtocolError("unknown_type", f"unknown type {kind!r}: use video, audio or close")
    data = doc.get("data")
    if not isinstance(data, str) or not data:
        raise ProtocolError("bad_message", f'{kind}: "data" must be a base64 string')
    if kind == "video" and not want_video:
        return ClientMessage("video")
    if data.startswith("data:"):
        data = _data_url_payload(kind, data)
    try:
        payload = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("bad_base64", f"{kind}: data is not valid base64") from None
    if kind == "audio":
        if len(payload) % 2:
            raise ProtocolError("bad_audio", "audio: odd byte count; send PCM s16le 16 kHz mono")
        max_bytes = limits.max_audio_ms * 32  # 16 kHz x 2 bytes per ms
        if len(payload) > max_bytes:
            raise ProtocolError(
                "audio_too_large", f"audio: {len(payload)} bytes, max {limits.max_audio_ms} ms"
            )
        return ClientMessage("audio", payload)
    if len(payload) > limits.max_frame_bytes:
        raise ProtocolError("frame_too_large", f"video: frame over {limits.max_frame_bytes} bytes")
    if not payload.startswith(b"\xff\xd8"):
        raise ProtocolError("bad_image", "video: data must be a JPEG")
    return ClientMessage("video", payload)


def _data_url_payload(kind: str, url: str) -> str:
    """``data:image/jpeg;base64,...`` (what ``canvas.toDataURL('image/jpeg')`` gives) ->
    the base64 part, once the type is one we take."""
    header, comma, payload = url.partition(",")
    media_type, *params = header.removeprefix("data:").lower().split(";")
    if not comma or "base64" not in params:
        raise ProtocolError("bad_base64", f"{kind}: a data URL must be data:<type>;base64,...")
    wanted = ("image/jpeg", "image/jpg") if kind == "video" else ("audio/pcm", "audio/l16")
    if media_type not in wanted:
        hint = "canvas.toDataURL('image/jpeg')" if kind == "video" else "PCM s16le 16 kHz mono"
        raise ProtocolError(
            "bad_image" if kind == "video" else "bad_audio",
            f"{kind}: data URL of type {media_type!r}; send {wanted[0]} ({hint})",
        )
    return payload


def normalise_frame(jpeg: bytes) -> bytes:
    """Decoded, shrunk to <= 720p, JPEG quality 70, as the original chat service sent them to
    the model. Blocking: call in a thread."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ProtocolError("bad_image", "video: the JPEG cannot be decoded")
    h, w = image.shape[:2]
    if h > MAX_HEIGHT:
        image = cv2.resize(
            image, (round(w * MAX_HEIGHT / h), MAX_HEIGHT), interpolation=cv2.INTER_AREA
        )
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ProtocolError("bad_image", "video: re-encoding failed")
    return buf.tobytes()


def model_jpeg(frame: Frame) -> bytes:
    """A camera frame as the model gets it (<= 720p, JPEG quality 70): converted from the
    decoder's picture in one pass and encoded once per frame and size, however many sessions
    (or viewers at that size) use it. Blocking: call in a thread."""
    width, height = frame.size
    scaled = None if height <= MAX_HEIGHT else round(width * MAX_HEIGHT / height)
    return frame.jpeg(JPEG_QUALITY, scaled)
