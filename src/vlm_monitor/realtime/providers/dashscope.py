"""Qwen-Omni realtime on DashScope (``wss://dashscope.aliyuncs.com/api-ws/v1/realtime``).

Client events: ``session.update`` (modalities, voice, pcm16 in, pcm24 out, turn detection off:
our own VAD commits), ``input_audio_buffer.append`` (16 kHz PCM), ``input_image_buffer.append``
(JPEG), ``input_audio_buffer.commit``, ``response.create``, ``response.cancel``. Server events
mapped back: ``response.text.delta``, ``response.audio.delta``, ``response.audio_transcript.delta``,
``conversation.item.input_audio_transcription.completed``, ``response.done``, ``error``.
"""

from __future__ import annotations

from typing import Any

from vlm_monitor.realtime.providers.base import REALTIME_KINDS, RealtimeProvider, b64


@REALTIME_KINDS.register("dashscope")
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
