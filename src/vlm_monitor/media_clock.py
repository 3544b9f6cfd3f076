"""A stream's time line on its media clock: when each frame was shot, by its presentation
time, anchored to the arrival clock. Decode-exit times bunch and stretch when the machine is
busy (a decoder thread waiting for a core lets frames queue, then releases them together);
presentation times keep the camera's spacing, which is what rates and the pulse are read on."""

from __future__ import annotations

PTS_MAX_DRIFT_S = 5.0  # media clock this far from arrival: a jump (reconnect/loop), re-anchor
# At a discontinuity, a frame that arrived within this much of when the next one was due
# continues the time line one frame on (a looped file, a camera's clock reset); one further
# off (a reconnect after an outage) is placed at its arrival.
RESYNC_S = 1.0
MAX_STEP_S = 1.0  # a longer step between two frames is a pause, not the frame period
# A camera whose clock runs this much fast or slow against arrival, over two such windows in
# a row, has timestamps that are not real time (a wrong rate in its encoder): arrival time
# is used until a window runs true again.
RATE_WINDOW_S = 20.0
RATE_TOLERANCE = 0.05


class MediaClock:
    """Places frames by their presentation time (``pts``), so frames arriving in a burst still
    sample by when they were shot; without pts, or when it jumps, by arrival time. Never
    goes back in time."""

    def __init__(self) -> None:
        self._t0: float | None = None
        self._pts_base: float | None = None  # pts value at relative time 0
        self._last = 0.0
        self._step = 0.0  # the last frame-to-frame step seen on the media clock
        # The raw timestamps' rate against arrival, over windows of continuous timestamps.
        self._since: tuple[float, float] | None = None  # (arrival, pts) the window starts at
        self._prev_pts: float | None = None
        self._bad_windows = 0
        self._offset = 0.0  # added to arrival times while they stand in for timestamps
        self.trusted = True  # False while the timestamps do not run in real time

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
        if pts is not None:
            self._watch_rate(wall, pts)
        if pts is None or not self.trusted:
            if self._pts_base is not None:  # from timestamps to arrival: no jump, no stall
                self._offset = max(0.0, self._last - wall)
                self._pts_base = None
            self._last = max(wall + self._offset, self._last)
            return self._last
        if self._pts_base is not None:
            media = pts - self._pts_base
            step = media - self._last
            if -self._step < step < 0:  # a timestamp a little out of order: not a jump
                return self._last
            if abs(media - wall) < PTS_MAX_DRIFT_S and step >= 0:
                if 0 < step <= MAX_STEP_S:
                    self._step = step
                self._last = media
                return media
            due = self._last + self._step
            # Re-anchor: one frame on when that is about now, else at the arrival.
            self._last = max(due if abs(wall - due) < RESYNC_S else wall, self._last)
        else:
            self._last = max(wall + self._offset, self._last)
        self._pts_base = pts - self._last
        return self._last

    def _watch_rate(self, wall: float, pts: float) -> None:
        """Two windows in a row whose timestamps ran more than RATE_TOLERANCE off arrival
        (one could be a stall, or a burst at connect, at its end) stop trusting them; one good
        window trusts them again."""
        prev, self._prev_pts = self._prev_pts, pts
        if self._since is None or prev is None or not 0 <= pts - prev <= MAX_STEP_S:
            self._since = (wall, pts)  # the start, or a jump: a new window
            return
        span = wall - self._since[0]
        if span < RATE_WINDOW_S:
            return
        rate = (pts - self._since[1]) / span
        self._bad_windows = 0 if abs(rate - 1.0) <= RATE_TOLERANCE else self._bad_windows + 1
        self.trusted = self._bad_windows < 2
        self._since = (wall, pts)
