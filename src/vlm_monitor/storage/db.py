"""SQLite store under ``data_dir``: streams added at runtime survive a restart."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    id TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""


class Store:
    """All methods are async and run SQLite in a worker thread; one connection, serialised."""

    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / "vlm-monitor.db"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    async def save_stream(self, stream_id: str, config: dict[str, Any]) -> None:
        await asyncio.to_thread(
            self._run,
            "INSERT OR REPLACE INTO streams (id, config, created_at) VALUES (?, ?, ?)",
            (stream_id, json.dumps(config), time.time()),
        )

    async def delete_stream(self, stream_id: str) -> None:
        await asyncio.to_thread(self._run, "DELETE FROM streams WHERE id = ?", (stream_id,))

    async def load_streams(self) -> list[dict[str, Any]]:
        rows = await asyncio.to_thread(self._run, "SELECT config FROM streams ORDER BY created_at")
        return [json.loads(row[0]) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
