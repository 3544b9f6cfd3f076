"""The OpenAI Realtime API (``wss://api.openai.com/v1/realtime``).

It takes 24 kHz PCM: our 16 kHz audio is resampled (linear interpolation, keeping the phase
across chunks). Images go as ``input_image`` data URIs in ``conversation.item.create``. A
commit needs >= 100 ms of audio since the last one: shorter turns are not committed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vlm_monitor.realtime.providers.base import REALTIME_KINDS, RealtimeProvider, b64

MIN_COMMIT_SAMPLES_24K = 2400  # 100 ms


class Resampler16to24:
    """Streaming 16 -> 24 kHz (3 output samples per 2 input), continuous across chunks."""

    def __init__(self) -> None:
        self._carry = np.zeros(0, np.float64)
        self._t = 0.0  # position of the next output sample, in input samples

    def __call__(self, pcm: bytes) -> bytes:
        x = np.concatenate([self._carry, np.frombuffer(pcm, "<i2").astype(np.float64)])
        if len(x) < 2:
            self._carry = x
            return b""
        step = 16000 / 24000
        positions = np.arange(self._t, len(x) - 1, step)
        y = np.interp(positions, np.arange(len(x)), x)
        next_t = positions[-1] + step if len(positions) else self._t
        keep = int(next_t)  # the output continues from sample `keep` of x
        self._carry = x[keep:]
        self._t = next_t - keep
        out: bytes = np.clip(np.round(y), -32768, 32767).astype("<i2").tobytes()
        return out


@REALTIME_KINDS.register("openai")
class OpenAIRealtime(RealtimeProvider):
    name = "openai"
    output_sample_rate = 24000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._resample = Resampler16to24()
        self._uncommitted = 0  # 24 kHz samples appended since the last commit

    def session_update(self) -> dict[str, Any]:
        session: dict[str, Any] = {
            "type": "realtime",
            "model": self.model,
            "output_modalities": ["audio"],
            "audio": {
                "input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": None},
                "output": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "voice": self.voice or "alloy",
                },
            },
        }
        if self.instructions:
            session["instructions"] = self.instructions
        return {"type": "session.update", "session": session}

    def audio_event(self, pcm16k: bytes) -> dict[str, Any]:
        pcm24k = self._resample(pcm16k)
        self._uncommitted += len(pcm24k) // 2
        return {"type": "input_audio_buffer.append", "audio": b64(pcm24k)}

    def image_event(self, jpeg: bytes) -> dict[str, Any]:
        return {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_image", "image_url": "data:image/jpeg;base64," + b64(jpeg)}
                ],
            },
        }

    async def commit_and_respond(self) -> None:
        if self._uncommitted < MIN_COMMIT_SAMPLES_24K:
            return  # the API rejects commits of < 100 ms
        self._uncommitted = 0
        await super().commit_and_respond()
