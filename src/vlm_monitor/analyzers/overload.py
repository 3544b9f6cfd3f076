"""Graceful overload of the local analyzers.

When this machine cannot analyse every stream at its analyzers' rates, no stream may
silently lose everything. So every analyzer of every stream sheds the same share of its rate,
through its hub subscription's decimation (the frames it keeps stay evenly spaced, which heart
rate needs), each stream says so (``degraded``), and a new stream is started at the shed rate
or refused (503) before the running ones break.

The signal: a runner that keeps up takes each frame before the next one it wants arrives; one
that does not loses frames in its subscription (``dropped``). The share lost over a period,
across all runners, is how far the machine is behind. It is machine overload when the
analyzer threads (or processes) are busy (wall time inside ``analyze``, which includes waiting
for a core), when the server and its analyzer processes use the cores (``cpu``: decoding
counts too), or when most analyzers lose frames (the cores or the event loop are taken by
other work); one analyzer that loses frames alone is slow on its own, and only its stream is
degraded. The busy and CPU shares also say when the rates may rise again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from vlm_monitor.analyzers.rppg import MIN_RATE_HZ
from vlm_monitor.config.vlm import OverloadConfig
from vlm_monitor.types import CapacityError

log = logging.getLogger("vlm_monitor.analyzers")

LATE_SHARE = 0.05  # frames lost above this share of those wanted: behind
SLOW_RUNNER_SHARE = 0.2  # one runner losing this share while the machine is not full: slow
RISE = 1.1  # rates rise by 10 % a period while there is room: slowly, to find the limit
PROBE_AFTER = 5  # periods without a lost frame after which busy cores may take a step up
MARGIN = 0.95  # shed a little below what was kept, so the queue drains
# A runner's first seconds of lost frames are not counted: loading models and the first
# frames of a camera (or of many, at start-up) lose frames once, which is no measure of the
# load to come. Its busy time counts from the start.
WARM_S = 5.0
# Least rate each analyzer sheds to. Heart rate's band needs MIN_RATE_HZ samples a second:
# below it a reading is worthless, so it keeps that rate and the others shed more.
FLOOR_FPS = {"heart_rate": MIN_RATE_HZ}


class Runner(Protocol):
    """What the governor needs of an analyzer running on a stream."""

    @property
    def stream_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def target_fps(self) -> float: ...
    def counters(self) -> tuple[int, int, float]:
        """(frames taken, frames lost while busy, seconds spent analysing) since start."""
        ...

    def shed(self, fps: float) -> None: ...


@dataclass
class _Seen:
    taken: int = 0
    lost: int = 0
    busy_s: float = 0.0
    late: float = 0.0  # share of wanted frames lost over the last period
    born: float = 0.0  # monotonic time first seen


def shed_rate(name: str, target: float, share: float) -> float:
    """``target`` at ``share`` of itself, not below the analyzer's floor (nor above target)."""
    return max(target * share, min(target, FLOOR_FPS.get(name, 0.0)))


class LoadGovernor:
    """Measures the analyzers every ``period_s`` and sets the share of their rates they run at.
    Called on the event loop (``measure``) and by the API (``admit``, ``status``)."""

    def __init__(self, config: OverloadConfig, threads: int, cores: float = 1.0) -> None:
        self.config, self.threads, self.cores = config, threads, max(0.1, cores)
        self.share = 1.0
        self.busy = 0.0  # the analyzer threads' busy share over the last period
        self.cpu = 0.0  # share of the cores the server and its analyzer processes used
        self._cpu: dict[int, float] | None = None
        self.late = 0.0  # share of wanted frames lost over the last period, all runners
        self.since: float | None = None  # unix time shedding began
        self.refused = 0
        self._seen: dict[tuple[str, str], _Seen] = {}
        self._slow: dict[str, str] = {}  # stream -> why one of its analyzers is slow
        self._last: float | None = None
        self._quiet = 0  # periods in a row without lost frames

    def measure(
        self,
        runners: Sequence[Runner],
        now: float | None = None,
        cpu: Mapping[int, float] | None = None,
    ) -> None:
        """``now``: monotonic seconds (given by tests that script the counters); ``cpu``: CPU
        seconds used so far by the server and its analyzer processes, by pid (a process
        that restarted counts from its next look)."""
        now = time.monotonic() if now is None else now
        period = max(1e-3, now - (self._last if self._last is not None else now))
        self._last = now
        if cpu is not None:
            if self._cpu is not None:
                was = self._cpu
                used = sum(max(0.0, s - was[p]) for p, s in cpu.items() if p in was)
                self.cpu = used / (period * self.cores)
            self._cpu = dict(cpu)
        seen: dict[tuple[str, str], _Seen] = {}
        taken = lost = 0
        busy = 0.0
        slow: dict[str, str] = {}
        for runner in runners:
            key = (runner.stream_id, runner.name)
            t, d, b = runner.counters()
            before = self._seen.get(key, _Seen(t, d, b, born=now))
            if t < before.taken or d < before.lost or b < before.busy_s:
                before = _Seen(born=now)  # a new runner under the same name: counters from 0
            seen[key] = _Seen(t, d, b, born=before.born)
            busy += b - before.busy_s  # the threads' time is spent, warming or not
            if now - before.born < WARM_S:
                continue
            dt, dd = t - before.taken, d - before.lost
            taken, lost = taken + dt, lost + dd
            late = dd / (dt + dd) if dt + dd else 0.0
            seen[key].late = late
            if late > SLOW_RUNNER_SHARE:
                slow[runner.stream_id] = (
                    f"{runner.name} loses {late:.0%} of its frames: each takes longer than "
                    f"its {runner.target_fps:g} fps allow"
                )
        self._seen, self._slow = seen, slow
        self.busy = busy / (self.threads * period)
        self.late = lost / (taken + lost) if taken + lost else 0.0
        behind = sum(1 for s in seen.values() if s.late > SLOW_RUNNER_SHARE)
        widespread = behind >= 2 and 2 * behind > len(seen)
        share = self.share
        full = max(self.busy, self.cpu) >= self.config.busy_share
        if self.late > LATE_SHARE and (full or widespread):
            share = max(self.config.min_share, share * (1 - self.late) * MARGIN)
        quiet = self.late < LATE_SHARE / 2
        self._quiet = self._quiet + 1 if quiet else 0
        # Busy cores that lose nothing may have room yet (a burst shed them, not the load):
        # after a while without loss the rates try a step up, and shed again if it was too
        # much.
        if quiet and share < 1.0 and (not full or self._quiet >= PROBE_AFTER):
            share = min(1.0, share * RISE)
            self._quiet = 0
        self._log_change(share, len(seen))
        self.share = share
        for runner in runners:
            runner.shed(shed_rate(runner.name, runner.target_fps, share))

    def _log_change(self, share: float, runners: int) -> None:
        if share < 1.0 and self.since is None:
            self.since = time.time()
            log.warning(
                "analyzers overloaded: shedding rate",
                extra={"fields": {"share": round(share, 2), "busy": round(self.busy, 2),
                                  "late": round(self.late, 3), "runners": runners}},
            )  # fmt: skip
        elif share >= 1.0 and self.since is not None:
            log.info("analyzers keep up again: full rates", extra={"fields": {}})
            self.since = None

    def start_rate(self, name: str, target: float) -> float:
        """The rate a newly started analyzer runs at: the current shed share of its own."""
        return shed_rate(name, target, self.share)

    def admit(self, stream_id: str) -> None:
        """Raises CapacityError when a new stream with analyzers would break the running
        ones (or, with ``admit: refuse``, as soon as they shed)."""
        if self.share <= self.config.min_share:
            reason = (
                f"analyzers already run at {self.share:.0%} of their rates, the least "
                f"analysis.overload.min_share allows"
            )
        elif self.config.admit == "refuse" and (
            self.share < 1.0 or max(self.busy, self.cpu) > self.config.busy_share
        ):
            reason = (
                f"analyzers run at {self.share:.0%} of their rates, "
                f"{max(self.busy, self.cpu):.0%} busy, "
                "and analysis.overload.admit is refuse"
            )
        else:
            return
        self.refused += 1
        raise CapacityError(
            f"stream {stream_id!r} refused: this machine is at capacity ({reason}); remove a "
            "stream, lower analyzer rates, run analyzers in processes (analysis.processes) "
            "if the cores are not yet full, or on workers (analysis.dispatch: redis)"
        )

    def degraded(self, stream_id: str) -> dict[str, Any] | None:
        """Why this stream's analyzers do not run at their full rates, or None."""
        if self.share < 1.0:
            return {
                "reason": "overload",
                "share": round(self.share, 3),
                "since": self.since,
                "detail": f"this machine cannot keep up: every analyzer runs at "
                f"{self.share:.0%} of its rate (heart rate at least {MIN_RATE_HZ:g} fps)",
            }
        why = self._slow.get(stream_id)
        return None if why is None else {"reason": "slow_analyzer", "detail": why}

    def status(self) -> dict[str, Any]:
        return {
            "share": round(self.share, 3),
            "busy": round(self.busy, 3),
            "cpu": round(self.cpu, 3),
            "late": round(self.late, 3),
            "since": self.since,
            "refused": self.refused,
            "admit": self.config.admit,
            "min_share": self.config.min_share,
        }
