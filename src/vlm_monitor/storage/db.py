"""SQLite store under ``data_dir``: runtime-added streams and analysis results.

The schema is versioned with ``PRAGMA user_version`` and upgraded by the ordered MIGRATIONS
at open; a migration is never edited once released, only appended.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

MIGRATIONS = [
    # 1: streams added through the API
    """CREATE TABLE IF NOT EXISTS streams (
        id TEXT PRIMARY KEY, config TEXT NOT NULL, created_at REAL NOT NULL)""",
    # 2: results (one row per clip analysed), newest-first queries per stream
    """CREATE TABLE results (
        id INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, created_at REAL NOT NULL,
        clip_id TEXT, error TEXT, doc TEXT NOT NULL);
       CREATE INDEX results_by_stream ON results (stream, id DESC)""",
    # 3: analyzer results (emotion, heart rate, motion, OCR), many per second
    """CREATE TABLE analyses (
        id INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, analyzer TEXT NOT NULL,
        video_timestamp REAL NOT NULL, session_id TEXT, doc TEXT NOT NULL);
       CREATE INDEX analyses_by_stream ON analyses (stream, analyzer, id DESC)""",
    # 4: manual stream -> session bindings (the exam-proctoring PUT /api/sessions)
    """CREATE TABLE sessions (
        stream TEXT PRIMARY KEY, session_id TEXT NOT NULL, student_id TEXT,
        created_at REAL NOT NULL)""",
    # 5: flows, their runs, and the alerts they raise
    """CREATE TABLE flows (id TEXT PRIMARY KEY, doc TEXT NOT NULL, created_at REAL NOT NULL);
       CREATE TABLE flow_runs (
        run_id TEXT PRIMARY KEY, flow_id TEXT NOT NULL, status TEXT NOT NULL,
        started_at REAL NOT NULL, doc TEXT NOT NULL);
       CREATE INDEX flow_runs_by_flow ON flow_runs (flow_id, started_at DESC);
       CREATE TABLE alerts (
        id INTEGER PRIMARY KEY AUTOINCREMENT, flow TEXT, stream TEXT, key TEXT,
        severity TEXT, created_at REAL NOT NULL, doc TEXT NOT NULL);
       CREATE INDEX alerts_by_time ON alerts (id DESC)""",
    # 6: one row per analysed frame, so a frame analysed twice by Redis workers (at-least-once)
    # is stored once
    """DELETE FROM analyses WHERE id NOT IN (
           SELECT MIN(id) FROM analyses GROUP BY stream, analyzer, video_timestamp);
       CREATE UNIQUE INDEX analyses_once ON analyses (stream, analyzer, video_timestamp)""",
    # 7: a session's results for its summary, without reading every stream's
    """CREATE INDEX analyses_by_session ON analyses (session_id, analyzer)""",
]


class Store:
    """One connection, serialised by a lock. ``*_sync`` methods are for worker threads; the
    async ones run the same work in a thread so the event loop never waits on disk."""

    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / "vlm-monitor.db"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._migrate()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            self._db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")

    @property
    def schema_version(self) -> int:
        return int(self._run("PRAGMA user_version")[0][0])

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

    def add_result_sync(self, doc: dict[str, Any]) -> int:
        """Stores a result document; returns its id (also written into ``doc``)."""
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO results (stream, created_at, clip_id, error, doc) VALUES (?,?,?,?,?)",
                (
                    doc["stream"],
                    time.time(),
                    doc.get("video_info", {}).get("clip_id"),
                    doc.get("error"),
                    "{}",
                ),
            )
            row_id = int(cur.lastrowid or 0)
            doc["id"] = row_id
            self._db.execute("UPDATE results SET doc = ? WHERE id = ?", (json.dumps(doc), row_id))
        return row_id

    async def results(self, stream: str | None, limit: int) -> list[dict[str, Any]]:
        if stream is None:
            sql, args = "SELECT doc FROM results ORDER BY id DESC LIMIT ?", (limit,)
        else:
            sql = "SELECT doc FROM results WHERE stream = ? ORDER BY id DESC LIMIT ?"
            args = (stream, limit)  # type: ignore[assignment]
        rows = await asyncio.to_thread(self._run, sql, args)
        return [json.loads(row[0]) for row in rows]

    async def result(self, result_id: int) -> dict[str, Any] | None:
        rows = await asyncio.to_thread(
            self._run, "SELECT doc FROM results WHERE id = ?", (result_id,)
        )
        return json.loads(rows[0][0]) if rows else None

    def add_analyses_sync(self, docs: list[dict[str, Any]], keep: int) -> None:
        """Stores a batch of analyzer results in one transaction; keeps the newest ``keep``."""
        rows = [
            (d["stream"], d["analyzer"], d["video_timestamp"], d.get("session_id"), json.dumps(d))
            for d in docs
        ]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO analyses "
                "(stream, analyzer, video_timestamp, session_id, doc) VALUES (?,?,?,?,?)",
                rows,
            )
            self._db.execute(
                "DELETE FROM analyses WHERE id <= (SELECT MAX(id) FROM analyses) - ?", (keep,)
            )
            self._db.execute("COMMIT")

    async def analyses(
        self, stream: str | None, analyzer: str | None, limit: int
    ) -> list[dict[str, Any]]:
        where, args = [], []
        for column, value in (("stream", stream), ("analyzer", analyzer)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT id, doc FROM analyses"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = await asyncio.to_thread(self._run, sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
        return [{"id": row[0], **json.loads(row[1])} for row in rows]

    async def session_analyses(
        self, session_id: str, analyzers: tuple[str, ...]
    ) -> list[dict[str, Any]]:
        """Every stored result of ``analyzers`` stamped with ``session_id``, oldest first."""
        marks = ",".join("?" * len(analyzers))
        rows = await asyncio.to_thread(
            self._run,
            f"SELECT doc FROM analyses WHERE session_id = ? AND analyzer IN ({marks}) ORDER BY id",
            (session_id, *analyzers),
        )
        return [json.loads(row[0]) for row in rows]

    async def save_session(self, stream: str, session_id: str, student_id: str | None) -> None:
        await asyncio.to_thread(
            self._run,
            "INSERT OR REPLACE INTO sessions (stream, session_id, student_id, created_at) "
            "VALUES (?,?,?,?)",
            (stream, session_id, student_id, time.time()),
        )

    async def delete_session(self, stream: str) -> None:
        await asyncio.to_thread(self._run, "DELETE FROM sessions WHERE stream = ?", (stream,))

    async def load_sessions(self) -> list[tuple[str, str, str | None]]:
        rows = await asyncio.to_thread(
            self._run, "SELECT stream, session_id, student_id FROM sessions"
        )
        return [(r[0], r[1], r[2]) for r in rows]

    async def save_flow(self, flow_id: str, doc: dict[str, Any]) -> None:
        await asyncio.to_thread(
            self._run,
            "INSERT OR REPLACE INTO flows (id, doc, created_at) VALUES (?, ?, ?)",
            (flow_id, json.dumps(doc), time.time()),
        )

    async def delete_flow(self, flow_id: str) -> None:
        await asyncio.to_thread(self._run, "DELETE FROM flows WHERE id = ?", (flow_id,))

    async def load_flows(self) -> list[dict[str, Any]]:
        rows = await asyncio.to_thread(self._run, "SELECT doc FROM flows ORDER BY created_at")
        return [json.loads(row[0]) for row in rows]

    def save_run_sync(self, doc: dict[str, Any], keep_per_flow: int = 500) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO flow_runs (run_id, flow_id, status, started_at, doc) "
                "VALUES (?,?,?,?,?)",
                (doc["run_id"], doc["flow_id"], doc["status"], doc["started_at"], json.dumps(doc)),
            )
            self._db.execute(
                "DELETE FROM flow_runs WHERE flow_id = ? AND run_id NOT IN (SELECT run_id FROM "
                "flow_runs WHERE flow_id = ? ORDER BY started_at DESC LIMIT ?)",
                (doc["flow_id"], doc["flow_id"], keep_per_flow),
            )

    async def runs(self, flow_id: str, limit: int) -> list[dict[str, Any]]:
        rows = await asyncio.to_thread(
            self._run,
            "SELECT doc FROM flow_runs WHERE flow_id = ? ORDER BY started_at DESC LIMIT ?",
            (flow_id, limit),
        )
        return [json.loads(row[0]) for row in rows]

    def add_alert_sync(self, doc: dict[str, Any]) -> int:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO alerts (flow, stream, key, severity, created_at, doc) "
                "VALUES (?,?,?,?,?,?)",
                (
                    doc.get("flow"),
                    doc.get("stream"),
                    doc.get("key"),
                    doc.get("severity"),
                    time.time(),
                    json.dumps(doc),
                ),
            )
            return int(cur.lastrowid or 0)

    async def alerts(self, flow: str | None, limit: int) -> list[dict[str, Any]]:
        if flow is None:
            sql, args = "SELECT id, doc FROM alerts ORDER BY id DESC LIMIT ?", (limit,)
        else:
            sql = "SELECT id, doc FROM alerts WHERE flow = ? ORDER BY id DESC LIMIT ?"
            args = (flow, limit)  # type: ignore[assignment]
        rows = await asyncio.to_thread(self._run, sql, args)
        return [{**json.loads(row[1]), "id": row[0]} for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
