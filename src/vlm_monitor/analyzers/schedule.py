"""Which of a stream's analyzers a frame is due for, by each one's rate: for feeds that hand
one frame to several analyzers at once (the Redis dispatch, the backend-fed worker), where a
hub subscription per analyzer would not do."""

from __future__ import annotations

from collections.abc import Mapping

# A frame 90 % of an interval after the last one taken is due: one a little early is still
# taken, so jitter does not halve the rate.
DUE_AFTER = 0.9


class DueByRate:
    def __init__(self, rates: Mapping[str, float]) -> None:
        self.rates = dict(rates)  # analyzer name -> frames per second
        self._last: dict[str, float] = {}

    def due(self, ts: float) -> list[str]:
        """The analyzers due for a frame at ``ts`` (seconds), counted as served by it."""
        due = [n for n, r in self.rates.items() if ts - self._last.get(n, 0.0) >= DUE_AFTER / r]
        for name in due:
            self._last[name] = ts
        return due
