"""Batched, off-loop writes of high-rate analyzer results to SQLite.

Producers never wait: ``put`` appends to a bounded queue; when SQLite falls that far behind
(``maxsize`` documents, ~minutes of results), new documents are counted as ``dropped`` rather
than growing memory or blocking the analyzers. The thread writes whatever has accumulated in
one transaction, and flushes everything on ``close``.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from vlm_monitor.storage.db import Store

log = logging.getLogger("vlm_monitor.storage")
BATCH = 500
_STOP = object()


class AnalysisWriter:
    def __init__(self, store: Store, keep: int, maxsize: int = 20_000) -> None:
        self.store, self.keep = store, keep
        self._queue: queue.Queue[Any] = queue.Queue(maxsize)
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="analysis-writer", daemon=True)
        self._thread.start()

    def put(self, doc: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(doc)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            batch: list[dict[str, Any]] = []
            while True:
                if item is _STOP:
                    stopping = True
                else:
                    batch.append(item)
                if len(batch) >= BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._write(batch)

    def _write(self, batch: list[dict[str, Any]]) -> None:
        try:
            self.store.add_analyses_sync(batch, self.keep)
            self.written += len(batch)
        except Exception:
            self.failed += len(batch)
            log.exception("storing analyzer results failed", extra={"fields": {"n": len(batch)}})

    def close(self) -> None:
        """Writes what is queued, then stops. Blocking."""
        self._queue.put(_STOP)
        self._thread.join(10)

    def status(self) -> dict[str, int]:
        return {
            "written": self.written,
            "dropped": self.dropped,
            "failed": self.failed,
            "queued": self._queue.qsize(),
        }
