"""A stream's time line on its media clock: when each frame was shot, by its presentation
time, anchored to the arrival clock. Decode-exit times bunch and stretch when the machine is
busy (a decoder thread waiting for a core lets frames queue, then releases them together);
presentation times keep the camera's spacing, which is what rates and the pulse are read on."""

from __future__ import annotations

PTS_MAX_DRIFT_S = 5.0  # media clock this far from arrival: a jump (reconnect/loop), re-anchor


class MediaClock:
    """Places frames by their presentation time (``pts``), so frames arriving in a burst still
    sample by when they were shot; without pts, or when it jumps, by arrival time. Never
    goes back in time."""

    def __init__(self) -> None:
        self._t0: float | None = None
        self._pts_base: float | None = None  # pts value at relative time 0
        self._last = 0.0

    def unix(self, timestamp: float, pts: float | None) -> float:
        """Unix seconds on the media clock of a frame that arrived at ``timestamp``."""
        relative = self.relative(timestamp, pts)
        assert self._t0 is not None
        return self._t0 + relative

    def relative(self, timestamp: float, pts: float | None) -> float:
        """Seconds since the first frame on the media clock."""
        if self._t0 is None:
            self._t0 = timestamp
        wall = timestamp - self._t0
        if pts is None:
            self._pts_base = None
            self._last = max(wall, self._last)
            return self._last
        if self._pts_base is not None:
            media = pts - self._pts_base
            if abs(media - wall) < PTS_MAX_DRIFT_S and media >= self._last:
                self._last = media
                return media
        # (Re)anchor the media clock to the arrival clock.
        self._last = max(wall, self._last)
        self._pts_base = pts - self._last
        return self._last
