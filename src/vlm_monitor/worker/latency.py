"""What a worker measures of the frames it gets: count, rate, and latency from the backend's
decode to here (frames carry their capture time)."""

from __future__ import annotations

import time

from vlm_monitor.stats import percentile


class LatencyStats:
    def __init__(self) -> None:
        self.frames = 0
        self.latencies_ms: list[float] = []
        self.started = time.monotonic()
        self.last_seq = 0
        self.gaps = 0  # frames skipped by the latest-frame policy (seq jumps)

    def add(self, seq: int, ts: float) -> None:
        self.frames += 1
        self.latencies_ms.append((time.time() - ts) * 1000)
        if self.last_seq and seq > self.last_seq + 1:
            self.gaps += seq - self.last_seq - 1
        self.last_seq = seq

    def summary(self) -> dict[str, object]:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        lat = self.latencies_ms[-10000:]
        return {
            "frames": self.frames,
            "fps": round(self.frames / elapsed, 2),
            "latency_p50_ms": percentile(lat, 50, 2),
            "latency_p99_ms": percentile(lat, 99, 2),
            "last_seq": self.last_seq,
            "skipped": self.gaps,
        }
