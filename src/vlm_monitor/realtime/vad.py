"""Server-side voice activity detection with Silero VAD (the ONNX model taken from the
``silero-vad`` package and shipped in this package's ``models/``).

The model takes 512 new samples at 16 kHz with the previous call's last 64 samples in front
(576 in all) and a recurrent state (2, 1, 128); without that context it scores speech near
zero and never fires. One InferenceSession is shared by every session (``run`` is
thread-safe); each session has its own state, context and hysteresis: speech starts when
the probability reaches ``threshold`` for ``min_speech_ms`` and stops when it stays below
``threshold - 0.15`` for ``min_silence_ms``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlm_monitor.packaged import model_file

SAMPLE_RATE = 16000
CHUNK = 512  # samples per model call (32 ms)
CONTEXT = 64
_session_lock = threading.Lock()
_session: object | None = None


def model_path() -> Path:
    return model_file("silero_vad.onnx")


def shared_session() -> object:
    global _session
    with _session_lock:
        if _session is None:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1  # many small calls from many sessions
            options.inter_op_num_threads = 1
            _session = onnxruntime.InferenceSession(
                str(model_path()), options, providers=["CPUExecutionProvider"]
            )
        return _session


@dataclass
class VadEvent:
    kind: str  # "speech.started" | "speech.stopped"
    sample: int  # position in the session's audio, in samples (16 kHz)
    probability: float


class Vad:
    """One session's detector. ``feed`` takes any amount of 16 kHz mono s16le and returns
    the events it completes. Not thread-safe: one caller at a time per session."""

    def __init__(
        self, threshold: float = 0.5, min_speech_ms: int = 250, min_silence_ms: int = 500
    ) -> None:
        self.threshold = threshold
        self.off_threshold = max(0.01, threshold - 0.15)
        self.min_speech = min_speech_ms * SAMPLE_RATE // 1000
        self.min_silence = min_silence_ms * SAMPLE_RATE // 1000
        self._model = shared_session()
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT, np.float32)
        self._pending = np.zeros(0, np.float32)
        self._sr = np.array(SAMPLE_RATE, np.int64)
        self.position = 0  # samples analysed
        self.speaking = False
        self._run_start: int | None = None  # first sample of the current above/below run
        self.last_probability = 0.0

    def feed(self, pcm: bytes) -> list[VadEvent]:
        samples = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0
        audio = np.concatenate([self._pending, samples])
        events: list[VadEvent] = []
        n_chunks = len(audio) // CHUNK
        for i in range(n_chunks):
            chunk = audio[i * CHUNK : (i + 1) * CHUNK]
            p = self._probability(chunk)
            event = self._step(p)
            if event is not None:
                events.append(event)
            self.position += CHUNK
        self._pending = audio[n_chunks * CHUNK :]
        return events

    def _probability(self, chunk: np.ndarray) -> float:
        x = np.concatenate([self._context, chunk])[None, :]
        out, self._state = self._model.run(  # type: ignore[attr-defined]
            None, {"input": x, "state": self._state, "sr": self._sr}
        )
        self._context = chunk[-CONTEXT:]
        self.last_probability = float(out[0][0])
        return self.last_probability

    def _step(self, p: float) -> VadEvent | None:
        if not self.speaking:
            if p >= self.threshold:
                if self._run_start is None:
                    self._run_start = self.position
                if self.position + CHUNK - self._run_start >= self.min_speech:
                    self.speaking, start = True, self._run_start
                    self._run_start = None
                    return VadEvent("speech.started", start, p)
            else:
                self._run_start = None
        elif p < self.off_threshold:
            if self._run_start is None:
                self._run_start = self.position
            if self.position + CHUNK - self._run_start >= self.min_silence:
                self.speaking, end = False, self._run_start
                self._run_start = None
                return VadEvent("speech.stopped", end, p)
        else:
            self._run_start = None
        return None
