"""The boxes the analyzers last reported for each stream (motion's changed regions, faces,
text), kept so clip frames can be annotated with what was seen around them. Fed by the result
sink, locally computed and workers' readings alike."""

from __future__ import annotations

import threading
from typing import Any

from vlm_monitor.events.snapshot import norm_boxes

# A reading older than this (seconds before the frame) no longer says where things are: an
# analyzer that stopped seeing a face sends no box, so its last one must not linger.
MAX_AGE_S = 2.0


class LatestBoxes:
    """Thread-safe: ``on_result`` runs on producers' threads, ``around`` on the clip feeds'."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # stream -> analyzer -> (frame time, boxes in 0..1)
        self._latest: dict[str, dict[str, tuple[float, list[list[float]]]]] = {}
        self._streams: set[str] = set()  # only these are kept: the streams that annotate

    def watch(self, stream: str) -> None:
        with self._lock:
            self._streams.add(stream)

    def on_result(self, kind: str, origin: str, doc: dict[str, Any]) -> None:
        """A ``ResultSink`` listener."""
        stream = doc.get("stream")
        if kind != "analysis" or stream not in self._streams:
            return
        result = doc.get("result")
        boxes = norm_boxes(result) if isinstance(result, dict) else []
        with self._lock:
            per = self._latest.setdefault(str(stream), {})
            per[str(doc.get("analyzer"))] = (float(doc.get("video_timestamp") or 0.0), boxes)

    def around(self, stream: str, ts: float) -> list[list[float]]:
        """Every analyzer's latest boxes, unless that reading is older than ``MAX_AGE_S``
        before ``ts`` (unix seconds)."""
        with self._lock:
            readings = list(self._latest.get(stream, {}).values())
        return [box for seen, boxes in readings if seen >= ts - MAX_AGE_S for box in boxes]

    def forget(self, stream: str) -> None:
        with self._lock:
            self._streams.discard(stream)
            self._latest.pop(stream, None)
