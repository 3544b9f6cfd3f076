"""Incidents in SQLite, next to the results (same file, own connection and tables), with an
FTS5 index over titles, summaries and VLM text, and retention by age and count.

Every method blocks: the event service calls them in a thread.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, stream TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL,
    started_at REAL NOT NULL, updated_at REAL NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_time ON events (started_at DESC);
CREATE VIRTUAL TABLE IF NOT EXISTS events_fts USING fts5(id UNINDEXED, title, summary, text);
"""
WORD = re.compile(r"\w+", re.UNICODE)
# Fields added since the first release: rows written before them read as these.
LATER_FIELDS: dict[str, Any] = {"frame_ts": None, "evidence_error": None}


def _doc(raw: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(raw)
    for key, value in LATER_FIELDS.items():
        doc.setdefault(key, value)
    return doc


def fts_query(q: str) -> str | None:
    """The words of a person's search, each a quoted prefix term, all required: FTS5's own
    syntax (quotes, NEAR, column filters) would turn typos into 500s."""
    words = WORD.findall(q)
    return " ".join(f'"{w}"*' for w in words) or None


class EventStore:
    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        # Another connection writes results to this file: wait for it rather than fail.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def save(self, doc: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR REPLACE INTO events "
                "(id, stream, kind, state, started_at, updated_at, doc) VALUES (?,?,?,?,?,?,?)",
                (
                    doc["id"],
                    doc["stream"],
                    doc["kind"],
                    doc["state"],
                    doc["started_at"],
                    doc["updated_at"],
                    json.dumps(doc),
                ),
            )
            self._db.execute("DELETE FROM events_fts WHERE id = ?", (doc["id"],))
            self._db.execute(
                "INSERT INTO events_fts (id, title, summary, text) VALUES (?,?,?,?)",
                (doc["id"], doc["title"], doc["summary"], doc.get("text", "")),
            )
            self._db.execute("COMMIT")

    def get(self, event_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT doc FROM events WHERE id = ?", (event_id,)).fetchone()
        return _doc(row[0]) if row else None

    def query(
        self,
        stream: str | None = None,
        kind: str | None = None,
        since: float | None = None,
        q: str | None = None,
        limit: int = 100,
        state: str | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first (by start)."""
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("stream", stream), ("kind", kind), ("state", state)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if since is not None:
            where.append("updated_at >= ?")
            args.append(since)
        match = fts_query(q) if q else None
        if q and match is None:
            return []
        if match is not None:
            where.append("id IN (SELECT id FROM events_fts WHERE events_fts MATCH ?)")
            args.append(match)
        sql = "SELECT doc FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC, rowid DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*args, limit)).fetchall()
        return [_doc(r[0]) for r in rows]

    def open_events(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT doc FROM events WHERE state = 'open'").fetchall()
        return [_doc(r[0]) for r in rows]

    def counts(self) -> dict[str, dict[str, int]]:
        """By stream: events not yet acknowledged, events open, all events kept."""
        with self._lock:
            rows = self._db.execute(
                "SELECT stream, "
                "SUM(COALESCE(json_extract(doc, '$.acknowledged'), 0) = 0), "
                "SUM(state = 'open'), COUNT(*) FROM events GROUP BY stream ORDER BY stream"
            ).fetchall()
        return {r[0]: {"unacknowledged": r[1], "open": r[2], "total": r[3]} for r in rows}

    def drop_evidence(self, gone: dict[str, set[str]]) -> None:
        """Forgets the snapshots (``.jpg``) and clips (``.mp4``) deleted from disk."""
        for event_id, suffixes in gone.items():
            doc = self.get(event_id)
            if doc is None:
                continue
            if ".jpg" in suffixes:
                doc["snapshot_url"] = None
            if ".mp4" in suffixes:
                doc["clip_url"] = None
            self.save(doc)

    def prune(self, older_than: float, keep: int) -> list[str]:
        """Deletes closed events that ended before ``older_than`` and all but the newest
        ``keep``; returns their ids (their snapshots go too)."""
        with self._lock:
            old = self._db.execute(
                "SELECT id FROM events WHERE (state = 'closed' AND updated_at < ?) OR id NOT IN "
                "(SELECT id FROM events ORDER BY started_at DESC LIMIT ?)",
                (older_than, keep),
            ).fetchall()
            ids = [r[0] for r in old]
            if ids:
                self._db.execute("BEGIN")
                self._db.executemany("DELETE FROM events WHERE id = ?", [(i,) for i in ids])
                self._db.executemany("DELETE FROM events_fts WHERE id = ?", [(i,) for i in ids])
                self._db.execute("COMMIT")
        return ids

    def close(self) -> None:
        with self._lock:
            self._db.close()
