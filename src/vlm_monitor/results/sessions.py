"""The exam-proctoring stream -> session mapping: a manual binding wins; otherwise the stream
name is matched against a pattern such as ``exam-2041-user-7``; otherwise there is no
session."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

from vlm_monitor.storage.db import Store


@dataclass(frozen=True)
class Session:
    session_id: str
    student_id: str | None
    exam_id: str | None
    source: Literal["manual", "auto"]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class SessionMap:
    """Reads are lock-free dict lookups (hot path: every analyzer result); writes happen on
    the event loop and are persisted in SQLite."""

    def __init__(self, store: Store, pattern: str) -> None:
        self.store = store
        self.pattern = re.compile(pattern)
        self._manual: dict[str, Session] = {}

    async def load(self) -> None:
        for stream, session_id, student_id in await self.store.load_sessions():
            self._manual[stream] = Session(session_id, student_id, None, "manual")

    def resolve(self, stream: str) -> Session | None:
        manual = self._manual.get(stream)
        if manual is not None:
            return manual
        match = self.pattern.match(stream)
        if match is None:
            return None
        groups = match.groupdict()
        exam, student = groups.get("exam_id"), groups.get("student_id")
        # Without an exam system to ask, the session is named after what the name says.
        session_id = f"{exam}:{student}" if exam and student else stream
        return Session(session_id, student, exam, "auto")

    async def bind(self, stream: str, session_id: str, student_id: str | None) -> Session:
        await self.store.save_session(stream, session_id, student_id)
        session = Session(session_id, student_id, None, "manual")
        self._manual[stream] = session
        return session

    async def unbind(self, stream: str) -> bool:
        if stream not in self._manual:
            return False
        await self.store.delete_session(stream)
        del self._manual[stream]
        return True

    def bindings(self) -> dict[str, dict[str, Any]]:
        return {stream: s.to_json() for stream, s in self._manual.items()}
