"""Small asyncio helpers shared by every long-running part of the server."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancels ``task`` and waits until it has finished unwinding, so whatever it holds
    (sockets, subscriptions) is released before the caller goes on."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
