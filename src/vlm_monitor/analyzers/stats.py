"""What one analyzer on one stream did: frames, results, errors, drops, latency."""

from __future__ import annotations

import collections
import logging
import time
from typing import Any

from vlm_monitor.stats import percentile

log = logging.getLogger("vlm_monitor.analyzers")
ERROR_LOG_EVERY_S = 10.0


class RunnerStats:
    """What one analyzer on one stream did, wherever it runs (here or in a Redis worker)."""

    def __init__(self, stream: str, analyzer: str, fps_target: float) -> None:
        self.stream, self.analyzer, self.fps_target = stream, analyzer, fps_target
        self.frames = 0
        self.results = 0
        self.errors = 0
        self.dropped = 0  # frames it never saw: newer ones came, or a backlog was full
        self.last_error: str | None = None
        self._last_error_log = 0.0
        self._latencies: collections.deque[float] = collections.deque(maxlen=512)
        self._done: collections.deque[float] = collections.deque(maxlen=256)

    def analysed(self, latency_s: float | None) -> None:
        """A frame was analysed; ``latency_s`` when it gave a result."""
        self.frames += 1
        self._done.append(time.time())
        if latency_s is not None:
            self.results += 1
            self._latencies.append(latency_s)

    def failed(self, error: str, exc: BaseException | None = None) -> None:
        self.errors += 1
        self.last_error = error
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_EVERY_S:  # one log line per burst
            self._last_error_log = now
            log.error(
                "analyzer failed",
                exc_info=exc,
                extra={
                    "fields": {
                        "stream": self.stream,
                        "analyzer": self.analyzer,
                        "error": error,
                        "errors": self.errors,
                    }
                },
            )

    def status(self) -> dict[str, Any]:
        now = time.time()
        recent = [t for t in self._done if now - t <= 5.0]
        fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 2 else 0.0
        lat = list(self._latencies)
        return {
            "fps_target": self.fps_target,
            "fps": round(fps, 2),
            "frames": self.frames,
            "results": self.results,
            "errors": self.errors,
            "last_error": self.last_error,
            "dropped": self.dropped,
            "latency_p50_s": percentile(lat, 50),
            "latency_p99_s": percentile(lat, 99),
        }
