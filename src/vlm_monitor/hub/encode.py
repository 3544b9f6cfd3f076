"""JPEG for viewers: encoded once per frame and width, off the event loop, shared by everyone."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from vlm_monitor.types import Frame


class JpegEncoder:
    """Async front of ``Frame.jpeg``: a cache hit returns at once, a miss runs in the pool.
    Two viewers asking for the same frame and width at once share one encode (the frame's
    lock)."""

    def __init__(self, quality: int = 80, workers: int = 2) -> None:
        self.quality = quality
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="jpeg")

    async def encode(self, frame: Frame, width: int | None = None) -> bytes:
        if frame.has_jpeg(self.quality, width):
            return frame.jpeg(self.quality, width)
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, frame.jpeg, self.quality, width
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
