"""The clip pipeline's threads, with a watchdog that restarts one that has died.

The loops catch every ``Exception`` per clip, so a plug-in error costs one clip. What can
still end a thread is a ``BaseException`` that is not an ``Exception`` (``SystemExit`` from a
library, a plug-in's own BaseException subclass); without a restart the stream would keep
buffering frames that no clip ever comes out of.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("vlm_monitor.clips")

CHECK_EVERY_S = 0.5


class WorkerThreads:
    """Named daemon threads that run until ``stop`` is set; ``check()`` restarts dead ones.

    ``check()`` is cheap when called often (it looks at most every ``CHECK_EVERY_S``)."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self._targets: dict[str, Callable[[], None]] = {}
        self._threads: dict[str, threading.Thread] = {}
        # Taken with ``stop`` set inside it, so no restart can slip in behind stop().
        self._lock = threading.Lock()
        self._next_check = 0.0
        self.restarts = 0

    def start(self, targets: dict[str, Callable[[], None]]) -> None:
        with self._lock:
            if self._threads:
                raise RuntimeError("processor already started")
            self._stop.clear()
            self._targets = dict(targets)
            for name in self._targets:
                self._spawn(name)

    def stop(self, timeout: float) -> list[str]:
        """Sets the stop event and joins; returns the names of threads still running."""
        with self._lock:
            self._stop.set()
            threads = list(self._threads.values())
            self._threads = {}
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.1, deadline - time.monotonic()))
        return [t.name for t in threads if t.is_alive()]

    def alive(self) -> dict[str, bool]:
        with self._lock:
            return {name: t.is_alive() for name, t in self._threads.items()}

    def check(self) -> int:
        """Restarts the threads that died; returns how many."""
        now = time.monotonic()
        if now < self._next_check:
            return 0
        self._next_check = now + CHECK_EVERY_S
        with self._lock:
            if self._stop.is_set():
                return 0
            dead = [name for name, t in self._threads.items() if not t.is_alive()]
            for name in dead:
                self._spawn(name)
                self.restarts += 1
                log.error(
                    "clip pipeline thread restarted",
                    extra={"fields": {"thread": name, "restarts": self.restarts}},
                )
            return len(dead)

    def _spawn(self, name: str) -> None:
        thread = threading.Thread(target=self._run, args=(name,), name=name, daemon=True)
        self._threads[name] = thread
        thread.start()

    def _run(self, name: str) -> None:
        try:
            self._targets[name]()
        except BaseException:
            # The thread ends here either way; logged with the stream's other records rather
            # than printed by threading.excepthook, and restarted by check().
            log.critical(
                "clip pipeline thread died", exc_info=True, extra={"fields": {"thread": name}}
            )
