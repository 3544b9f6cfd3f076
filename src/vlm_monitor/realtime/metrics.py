"""Realtime session counters and latencies, per session and summed for /metrics."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

from vlm_monitor.stats import percentile

COUNTERS = (
    "frames_received",
    "frames_forwarded",
    "frames_dropped",
    "audio_chunks",
    "audio_bytes",
    "errors",
    "turns",
    "barge_ins",
    "vad_dropped",
)


@dataclass
class SessionStats:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    onset_s: list[float] = field(default_factory=list)  # speech onset -> speech.started
    first_delta_s: list[float] = field(default_factory=list)  # speech end -> first delta
    chunk_ms: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=2000)
    )  # server time per audio message

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    def to_json(self) -> dict[str, Any]:
        return {
            **self.counts,
            "speech_onset_to_started_s": self.onset_s[-20:],
            "speech_end_to_first_delta_s": self.first_delta_s[-20:],
            "audio_chunk_ms_p50": percentile(self.chunk_ms, 50),
            "audio_chunk_ms_p99": percentile(self.chunk_ms, 99),
        }


class RealtimeMetrics:
    """Totals over all sessions, live and ended."""

    def __init__(self) -> None:
        self.active: dict[str, SessionStats] = {}
        self.ended = dict.fromkeys(COUNTERS, 0)
        self.sessions_total = 0
        self.onset_s: collections.deque[float] = collections.deque(maxlen=1000)
        self.first_delta_s: collections.deque[float] = collections.deque(maxlen=1000)

    def opened(self, session_id: str) -> SessionStats:
        self.sessions_total += 1
        stats = self.active[session_id] = SessionStats()
        return stats

    def closed(self, session_id: str) -> None:
        stats = self.active.pop(session_id, None)
        if stats is not None:
            for key, value in stats.counts.items():
                self.ended[key] += value

    def totals(self) -> dict[str, int]:
        out = dict(self.ended)
        for stats in self.active.values():
            for key, value in stats.counts.items():
                out[key] += value
        return out
