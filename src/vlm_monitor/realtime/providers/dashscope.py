"""Qwen-Omni realtime on DashScope (``wss://dashscope.aliyuncs.com/api-ws/v1/realtime``).

Client events: ``session.update`` (modalities, voice, pcm16 in, pcm24 out, turn detection off:
our own VAD commits), ``input_audio_buffer.append`` (16 kHz PCM), ``input_image_buffer.append``
(JPEG), ``input_audio_buffer.commit``, ``response.create``, ``response.cancel``. Server events
mapped back: ``response.text.delta``, ``response.audio.delta``, ``response.audio_transcript.delta``,
``conversation.item.input_audio_transcription.completed``, ``response.done``, ``error``.
"""

from __future__ import annotations

from typing import Any

from vlm_monitor.realtime.providers.base import RealtimeProvider, UpstreamEvent, b64


class DashScopeRealtime(RealtimeProvider):
    name = "dashscope"
    output_sample_rate = 24000

    def session_update(self) -> dict[str, Any]:
        session: dict[str, Any] = {
            "modalities": ["text", "audio"],
            "voice": self.voice or "Cherry",
            "input_audio_format": "pcm16",
            "output_audio_format": "pcm24",
            "turn_detection": None,
        }
        if self.instructions:
            session["instructions"] = self.instructions
        return {"type": "session.update", "session": session}

    def audio_event(self, pcm16k: bytes) -> dict[str, Any]:
        return {"type": "input_audio_buffer.append", "audio": b64(pcm16k)}

    def image_event(self, jpeg: bytes) -> dict[str, Any]:
        return {"type": "input_image_buffer.append", "image": b64(jpeg)}

    def translate(self, event: dict[str, Any]) -> UpstreamEvent | None:
        return translate_common(event)


def translate_common(event: dict[str, Any]) -> UpstreamEvent | None:
    """Both providers' server events (OpenAI's GA names and the beta/DashScope ones)."""
    kind = event.get("type", "")
    if kind in ("response.text.delta", "response.output_text.delta"):
        return UpstreamEvent("text.delta", {"text": event.get("delta", "")})
    if kind in ("response.audio_transcript.delta", "response.output_audio_transcript.delta"):
        return UpstreamEvent("text.delta", {"text": event.get("delta", ""), "from_audio": True})
    if kind in ("response.audio.delta", "response.output_audio.delta"):
        return UpstreamEvent("audio.delta", {"audio": event.get("delta", "")})
    if kind == "conversation.item.input_audio_transcription.completed":
        return UpstreamEvent("transcript", {"text": event.get("transcript", "")})
    if kind == "response.done":
        response = event.get("response") or {}
        return UpstreamEvent("response.done", {"status": response.get("status", "completed")})
    if kind == "error":
        error = event.get("error") or {}
        return UpstreamEvent(
            "error",
            {"code": "upstream_" + str(error.get("code") or error.get("type") or "error"),
             "message": str(error.get("message", "upstream error"))},
        )  # fmt: skip
    return None
