"""A token bucket: ``rate`` units per second on average, bursts up to ``burst``."""

from __future__ import annotations

import time


class TokenBucket:
    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else rate
        self._tokens = self.burst
        self._last = time.monotonic()
        self.refused = 0

    def allow(self, cost: float = 1.0) -> bool:
        """``cost``: units this event takes (1 for a message, its size for bytes)."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        self.refused += 1
        return False
