"""Give freed heap back to the operating system now and then.

A burst of large messages or many short sessions frees its memory inside the process, but
glibc's allocator keeps those pages (per thread arena) rather than returning them, so the
resident size stays at the burst's peak for good. ``malloc_trim(0)`` returns them; it is
cheap (milliseconds) and runs in a thread, every ``interval_s``. Elsewhere than glibc it is a
no-op.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

from vlm_monitor.aio import cancel_and_wait

log = logging.getLogger("vlm_monitor.memory")


def _malloc_trim() -> Callable[[], None] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


class HeapTrimmer:
    def __init__(self, interval_s: float = 30.0) -> None:
        self.interval_s = interval_s
        self.trims = 0
        self._trim = _malloc_trim()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._trim is not None:
            self._task = asyncio.create_task(self._run(), name="heap-trimmer")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        assert self._trim is not None
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await asyncio.to_thread(self._trim)
                self.trims += 1
            except Exception:  # never fatal: memory is only kept longer
                log.exception("malloc_trim failed")
