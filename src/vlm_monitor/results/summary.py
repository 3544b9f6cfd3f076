"""The proctor's report of one exam session, from its stored analyzer results.

Readings are weighted by how long they stood: each lasts until the next one of its stream and
analyzer, at most ``MAX_GAP_S`` (a longer silence is a stream that was down, not minutes of
whatever was read last), the last one as long as the series' usual step. Attention episodes
come from the ``incident`` lists the analyzer reported: an episode runs from when its
condition began (``incident_since``, before the hold) to the first reading without it.
"""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from vlm_monitor.analyzers.emotion import LABELS
from vlm_monitor.types import ATTENTION_KINDS as INCIDENT_KINDS

MAX_GAP_S = 10.0


def _weighted(rows: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], float]]:
    """``(result, seconds it stood)`` for one stream's readings of one analyzer, in order."""
    times = [float(r["video_timestamp"]) for r in rows]
    steps = [min(b - a, MAX_GAP_S) for a, b in itertools.pairwise(times)]
    last = statistics.median(steps) if steps else 0.0
    for row, dt in zip(rows, [*steps, last], strict=True):
        yield row.get("result") or {}, max(0.0, dt)


def _minutes(seconds: float) -> float:
    return round(seconds / 60.0, 2)


def _episodes(rows: list[dict[str, Any]], stream: str) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    open_: dict[str, float] = {}
    for row in rows:
        ts, result = float(row["video_timestamp"]), row.get("result") or {}
        raw = result.get("incident") or []
        kinds = {raw} if isinstance(raw, str) else set(raw)
        since = result.get("incident_since") or {}
        for kind in INCIDENT_KINDS:
            if kind in kinds and kind not in open_:
                open_[kind] = float(since.get(kind) or ts)
            elif kind not in kinds and kind in open_:
                found[kind].append(_episode(stream, open_.pop(kind), ts))
    last = float(rows[-1]["video_timestamp"]) if rows else 0.0
    for kind, start in open_.items():  # still going when the results end
        found[kind].append({**_episode(stream, start, last), "end": None, "open": True})
    return found


def _episode(stream: str, start: float, end: float) -> dict[str, Any]:
    return {
        "stream": stream,
        "start": start,
        "end": end,
        "seconds": round(end - start, 1),
        "minutes": _minutes(end - start),
        "open": False,
    }


def summarise(session_id: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The report from the session's stored analyses (any order, any of its streams)."""
    series: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        series[(row["stream"], row["analyzer"])].append(row)
    for readings in series.values():
        readings.sort(key=lambda r: float(r["video_timestamp"]))
    present = observed = 0.0
    episodes: dict[str, list[dict[str, Any]]] = {kind: [] for kind in INCIDENT_KINDS}
    bpm: list[float] = []
    trusted = hr_time = 0.0
    emotion_time: dict[str, float] = dict.fromkeys(LABELS, 0.0)
    for (stream, analyzer), readings in sorted(series.items()):
        if analyzer == "attention":
            for result, dt in _weighted(readings):
                observed += dt
                present += dt if result.get("present") else 0.0
            for kind, found in _episodes(readings, stream).items():
                episodes[kind] += found
        elif analyzer == "heart_rate":
            for result, dt in _weighted(readings):
                hr_time += dt
                if result.get("bpm") is not None:
                    bpm.append(float(result["bpm"]))
                    trusted += dt
        elif analyzer == "emotion":
            for result, dt in _weighted(readings):
                label = result.get("dominant_emotion")
                if result.get("face_detected") and label in emotion_time:
                    emotion_time[label] += dt
    times = [float(r["video_timestamp"]) for r in rows]
    felt = sum(emotion_time.values())
    return {
        "session_id": session_id,
        "streams": sorted({r["stream"] for r in rows}),
        "from": min(times, default=None),
        "to": max(times, default=None),
        "minutes_observed": _minutes(observed),
        "minutes_present": _minutes(present),
        "incidents": {
            kind: {
                "count": len(found),
                "minutes": _minutes(sum(e["seconds"] for e in found)),
                "episodes": sorted(found, key=lambda e: e["start"]),
            }
            for kind, found in episodes.items()
        },
        "heart_rate": {
            "mean": round(statistics.fmean(bpm), 1) if bpm else None,
            "min": round(min(bpm), 1) if bpm else None,
            "max": round(max(bpm), 1) if bpm else None,
            "trusted_share": round(trusted / hr_time, 3) if hr_time else None,
            "readings": len(bpm),
        },
        "emotions": {
            "distribution": {k: round(v / felt, 3) for k, v in emotion_time.items()}
            if felt
            else None,
            "dominant": max(emotion_time, key=lambda k: emotion_time[k]) if felt else None,
        },
    }
