"""What deserves a person's attention, and how it opens, grows and closes.

Pure logic, no I/O: ``EventTracker`` turns results and stream states into ``Change``s on
``Incident``s; the service stores and pushes them. One incident per (stream, kind, key) is open
at a time, so a quick first description and the VLM's final text land on the same id.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from vlm_monitor.types import ATTENTION_KINDS, SEVERITIES, Severity
from vlm_monitor.types import EVENT_KINDS as KINDS

__all__ = ["ATTENTION_KINDS", "KINDS", "SEVERITIES", "Severity"]
OFFLINE_STATES = ("reconnecting", "failed")
# Results an incident keeps ids of; more would only grow the row.
MAX_RESULT_IDS = 50
MAX_TEXT = 4000  # characters of VLM text kept per incident, for full-text search


@dataclass
class Incident:
    id: str
    stream: str
    kind: str
    severity: Severity
    title: str
    summary: str
    started_at: float
    updated_at: float
    state: Literal["open", "closed"] = "open"
    ended_at: float | None = None
    result_ids: list[str] = field(default_factory=list)
    acknowledged: bool = False
    key: str = ""
    text: str = ""  # VLM descriptions gathered while open, searched with the title and summary
    has_snapshot: bool = False
    has_clip: bool = False
    # Unix seconds the frame that opened it left the decoder (the capture time as this server
    # sees it); None when no frame did (a stream going offline).
    frame_ts: float | None = None
    # Why it has no snapshot or clip (e.g. the disk is short); None when nothing was refused.
    evidence_error: str | None = None
    # The result behind the snapshot: its boxes are drawn on the frame. Not stored.
    evidence: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "stream": self.stream,
            "kind": self.kind,
            "severity": self.severity,
            "title": self.title,
            "summary": self.summary,
            "state": self.state,
            "started_at": self.started_at,
            "frame_ts": self.frame_ts,
            "updated_at": self.updated_at,
            "ended_at": self.ended_at,
            "snapshot_url": f"/api/events/{self.id}/snapshot.jpg" if self.has_snapshot else None,
            "clip_url": f"/api/events/{self.id}/clip.mp4" if self.has_clip else None,
            "evidence_error": self.evidence_error,
            "result_ids": list(self.result_ids),
            "acknowledged": self.acknowledged,
            "key": self.key,
            "text": self.text,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Incident:
        return cls(
            id=doc["id"],
            stream=doc["stream"],
            kind=doc["kind"],
            severity=doc["severity"],
            title=doc["title"],
            summary=doc["summary"],
            started_at=doc["started_at"],
            updated_at=doc["updated_at"],
            state=doc["state"],
            ended_at=doc.get("ended_at"),
            result_ids=list(doc.get("result_ids", [])),
            acknowledged=bool(doc.get("acknowledged")),
            key=doc.get("key", ""),
            text=doc.get("text", ""),
            has_snapshot=doc.get("snapshot_url") is not None,
            has_clip=doc.get("clip_url") is not None,
            frame_ts=doc.get("frame_ts"),
            evidence_error=doc.get("evidence_error"),
        )


@dataclass(frozen=True)
class Change:
    """``action`` is ``open``, ``update`` or ``close``; ``incident`` is the state after it."""

    action: Literal["open", "update", "close"]
    incident: Incident


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def frame_time(doc: dict[str, Any]) -> float | None:
    """The capture time (unix seconds) of the frame behind a result document: an analyzer
    reading's frame, a clip's last sampled frame, or what a flow alert names."""
    info = doc.get("video_info")
    for value in (
        doc.get("frame_ts"),
        doc.get("video_timestamp"),
        info.get("end_timestamp") if isinstance(info, dict) else None,
    ):
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None


def severity_of(value: Any, default: Severity) -> Severity:
    return value if value in SEVERITIES else default


class EventTracker:
    """Not thread-safe: one owner (the event service, on the event loop) calls it."""

    def __init__(self, idle_close_s: float = 120.0) -> None:
        self.idle_close_s = idle_close_s  # an open incident nobody updates this long is closed
        self.open: dict[tuple[str, str, str], Incident] = {}
        self._stream_live: dict[str, bool] = {}

    def _open_or_update(
        self,
        stream: str,
        kind: str,
        key: str,
        severity: Severity,
        title: str,
        summary: str,
        result_id: str | None,
        evidence: dict[str, Any] | None,
        now: float,
        frame_ts: float | None = None,
    ) -> Change:
        current = self.open.get((stream, kind, key))
        if current is None:
            current = Incident(new_id(), stream, kind, severity, title, summary, now, now, key=key)
            current.evidence, current.frame_ts = evidence, frame_ts
            if result_id is not None:
                current.result_ids.append(result_id)
            self.open[(stream, kind, key)] = current
            return Change("open", current)
        current.updated_at = now
        # Severity only rises while open: a person must not miss that it became worse.
        if SEVERITIES.index(severity) > SEVERITIES.index(current.severity):
            current.severity = severity
        current.title, current.summary = title or current.title, summary or current.summary
        if result_id is not None and len(current.result_ids) < MAX_RESULT_IDS:
            current.result_ids.append(result_id)
        return Change("update", current)

    def _close(self, stream: str, kind: str, key: str, now: float) -> list[Change]:
        current = self.open.pop((stream, kind, key), None)
        if current is None:
            return []
        current.state, current.ended_at, current.updated_at = "closed", now, now
        return [Change("close", current)]

    def analysis(self, doc: dict[str, Any], now: float | None = None) -> list[Change]:
        """An analyzer reading (``ResultSink.analysis``'s document plus ``stream``)."""
        now = time.time() if now is None else now
        stream, analyzer = doc["stream"], doc.get("analyzer", "")
        result = doc.get("result") or {}
        rid = f"analysis:{analyzer}:{doc.get('frame_seq')}"
        changes: list[Change] = []
        if analyzer == "motion":
            if result.get("moving"):
                level = float(result.get("level") or 0.0)
                changes.append(
                    self._open_or_update(
                        stream,
                        "motion",
                        "",
                        "info",
                        "Motion",
                        f"motion level {level:.3f}",
                        rid,
                        result,
                        now,
                        frame_time(doc),
                    )
                )
            else:
                changes += self._close(stream, "motion", "", now)
        if "incident" in result:
            raw = result["incident"]
            kinds = {raw} if isinstance(raw, str) else set(raw or [])
            for kind in ATTENTION_KINDS:
                if kind in kinds:
                    changes.append(
                        self._open_or_update(
                            stream,
                            kind,
                            "",
                            "warning",
                            kind.replace("_", " ").capitalize(),
                            f"{analyzer}: {kind.replace('_', ' ')}",
                            rid,
                            result,
                            now,
                            frame_time(doc),
                        )
                    )
                else:
                    changes += self._close(stream, kind, "", now)
        return changes

    def clip(self, doc: dict[str, Any], now: float | None = None) -> list[Change]:
        """A VLM clip result: a structured ``alert`` opens or updates the stream's ``alert``
        incident (``alert: false`` closes it); its text joins every open incident of the
        stream, so the description a person reads is the model's, under the same id."""
        now = time.time() if now is None else now
        stream = doc["stream"]
        if doc.get("error"):
            return []
        text = str(doc.get("result") or "")
        structured = doc.get("structured") or {}
        rid = f"result:{doc.get('id')}"
        changes: list[Change] = []
        flag = structured.get("alert") if isinstance(structured, dict) else None
        if flag:
            detail = flag if isinstance(flag, dict) else structured
            changes.append(
                self._open_or_update(
                    stream,
                    "alert",
                    "vlm",
                    severity_of(detail.get("severity"), "warning"),
                    str(detail.get("title") or "VLM alert"),
                    str(detail.get("summary") or detail.get("reason") or text)[:MAX_TEXT],
                    rid,
                    {"boxes": detail.get("boxes"), "boxes_norm": detail.get("boxes_norm")},
                    now,
                    frame_time(doc),
                )
            )
        elif flag is not None:
            changes += self._close(stream, "alert", "vlm", now)
        touched = {id(c.incident) for c in changes}
        for (s, _kind, _key), incident in self.open.items():
            if s != stream or not text or id(incident) in touched:
                continue
            incident.text = (incident.text + "\n" + text).strip()[-MAX_TEXT:]
            incident.summary, incident.updated_at = text[:MAX_TEXT], now
            if len(incident.result_ids) < MAX_RESULT_IDS:
                incident.result_ids.append(rid)
            changes.append(Change("update", incident))
        for change in changes:
            if change.incident.kind == "alert" and text and text not in change.incident.text:
                change.incident.text = (change.incident.text + "\n" + text).strip()[-MAX_TEXT:]
        return changes

    def flow_alert(self, doc: dict[str, Any], now: float | None = None) -> list[Change]:
        """A flow ``alert`` node's alert: one incident per flow key while it keeps firing."""
        now = time.time() if now is None else now
        stream = doc.get("stream") or ""
        message = str(doc.get("message") or "")
        return [
            self._open_or_update(
                stream,
                "alert",
                f"flow:{doc.get('flow')}:{doc.get('key')}",
                severity_of(doc.get("severity"), "warning"),
                message[:200] or "Flow alert",
                message,
                f"alert:{doc.get('id')}",
                None,
                now,
                frame_time(doc),
            )
        ]

    def stream_state(self, stream: str, state: str, now: float | None = None) -> list[Change]:
        """``stream_offline`` opens when a live stream drops and closes when it is back, with
        a brief ``stream_online`` incident (opened and closed at once) saying so."""
        now = time.time() if now is None else now
        was_live = self._stream_live.get(stream)
        if state == "live":
            self._stream_live[stream] = True
            changes = self._close(stream, "stream_offline", "", now)
            if changes:
                back = Incident(
                    new_id(),
                    stream,
                    "stream_online",
                    "info",
                    "Stream back online",
                    f"{stream} is live again",
                    now,
                    now,
                    "closed",
                    now,
                )
                changes.append(Change("close", back))
            return changes
        if state in OFFLINE_STATES and was_live:
            self._stream_live[stream] = False
            return [
                self._open_or_update(
                    stream,
                    "stream_offline",
                    "",
                    "critical" if state == "failed" else "warning",
                    "Stream offline",
                    f"{stream} is {state}",
                    None,
                    None,
                    now,
                )
            ]
        if state == "stopped":
            self._stream_live.pop(stream, None)
            return self._close(stream, "stream_offline", "", now)
        return []

    def expire(self, now: float | None = None) -> list[Change]:
        """Closes incidents nobody updated for ``idle_close_s`` (a flow that stopped firing,
        an analyzer removed mid-incident). A stream offline stays open until it is back."""
        now = time.time() if now is None else now
        stale = [
            k
            for k, i in self.open.items()
            if i.kind != "stream_offline" and now - i.updated_at >= self.idle_close_s
        ]
        return [c for k in stale for c in self._close(*k, now)]
