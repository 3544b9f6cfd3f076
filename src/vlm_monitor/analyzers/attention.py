"""Attention for proctoring: is the student there, alone, and facing the screen.

Reads the stream's shared face tracking (every face BlazeFace found, the main face's head
pose and gaze). Conditions become incidents only after a hold, as motion does, so a blink, a
glance aside or one missed detection does not open an ``absent`` or ``looking_away``
incident. ``incident`` lists the kinds open now, the vocabulary the events service reads: a
kind that leaves the list closes its incident.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vlm_monitor.analyzers.base import Analyzer, StreamContext, placement
from vlm_monitor.analyzers.faces import FaceFrame
from vlm_monitor.analyzers.params import AttentionParams
from vlm_monitor.config import AnalyzerConfig
from vlm_monitor.geometry import Placement
from vlm_monitor.types import Frame

INCIDENT_KINDS = ("absent", "multiple_faces", "looking_away")


@dataclass
class Hold:
    """A condition that counts once it has lasted ``hold_s``; ``since`` is when it began."""

    hold_s: float
    since: float | None = None
    open: bool = False

    def update(self, active: bool, ts: float) -> None:
        if not active:
            self.since, self.open = None, False
            return
        if self.since is None:
            self.since = ts
        self.open = ts - self.since >= self.hold_s


@dataclass
class AttentionState:
    """The three holds of one stream; pure logic, driven with (frame reading, timestamp)."""

    params: AttentionParams
    holds: dict[str, Hold] = field(default_factory=dict)

    def __post_init__(self) -> None:
        p = self.params
        self.holds = {
            "absent": Hold(p.absent_s),
            "multiple_faces": Hold(p.multiple_s),
            "looking_away": Hold(p.away_s),
        }

    def update(self, faces: int, looking_away: bool, ts: float) -> dict[str, Any]:
        self.holds["absent"].update(faces == 0, ts)
        self.holds["multiple_faces"].update(faces > 1, ts)
        self.holds["looking_away"].update(looking_away, ts)
        open_kinds = [k for k in INCIDENT_KINDS if self.holds[k].open]
        return {
            "incident": open_kinds,
            "incident_since": {k: self.holds[k].since for k in open_kinds},
        }


def looks_away(
    pose: tuple[float, float] | None, eyes: tuple[float, float] | None, p: AttentionParams
) -> bool:
    """Head turned or tipped beyond the limits, or the irises at the eyes' corners (the
    head may face the screen while the eyes read a phone beside it)."""
    if pose is not None and (abs(pose[0]) > p.yaw_limit or abs(pose[1]) > p.pitch_limit):
        return True
    return eyes is not None and max(abs(eyes[0]), abs(eyes[1])) > p.gaze_limit


def attention_fields(seen: FaceFrame, place: Placement, p: AttentionParams) -> dict[str, Any]:
    """The reading of one frame before holds: ``faces, present, yaw, pitch, roll, gaze,
    looking_away, boxes, boxes_norm``. Without landmarks (the mesh lost the face) the pose
    and gaze are null and the face does not count as looking away: nothing says it does."""
    main = seen.main
    pose = None if main is None else main.pose
    eyes = None if main is None else main.gaze
    boxes = seen.boxes
    if not boxes and main is not None and main.landmarks is not None:
        # Detection runs about once a second and misses turned heads that the mesh still
        # follows: such a student is looking away, not absent.
        boxes = [main.box]
    away = bool(boxes) and looks_away(
        None if pose is None else (pose.yaw, pose.pitch),
        None if eyes is None else (eyes.x, eyes.y),
        p,
    )
    return {
        "faces": len(boxes),
        "present": bool(boxes),
        "yaw": None if pose is None else pose.yaw,
        "pitch": None if pose is None else pose.pitch,
        "roll": None if pose is None else pose.roll,
        "gaze": None if eyes is None else {"x": eyes.x, "y": eyes.y},
        "looking_away": away,
        **place.boxes_fields(boxes),
    }


class AttentionAnalyzer(Analyzer):
    """``attention``: the reading of every frame plus the open incidents. Reports when
    something a proctor sees changes (faces, presence, looking away, incidents) and every
    ``report_every_s`` otherwise, so stored results cover the whole session evenly."""

    name = "attention"

    def __init__(self, config: AnalyzerConfig, context: StreamContext) -> None:
        super().__init__(config, context)
        self.params = AttentionParams.model_validate(config.params)
        self._state = AttentionState(self.params)
        self._last_key: tuple[Any, ...] | None = None
        self._next_report = float("-inf")

    def analyze(self, image: np.ndarray, frame: Frame) -> dict[str, Any] | None:
        seen = self.context.faces.update(image, frame.capture_ts, look=True)
        payload = self.reading(seen, placement(image, frame), frame.capture_ts)
        if payload is not None:
            # Held on the capture clock; published on the result's (``video_timestamp``).
            shift = frame.ts - frame.capture_ts
            payload["incident_since"] = {
                k: since + shift for k, since in payload["incident_since"].items()
            }
        return payload

    def reading(self, seen: FaceFrame, place: Placement, ts: float) -> dict[str, Any] | None:
        """The payload for one frame's faces at ``ts``, or None when nothing is due."""
        payload = attention_fields(seen, place, self.params)
        payload.update(self._state.update(payload["faces"], payload["looking_away"], ts))
        self.context.latest[self.name] = payload
        key = (payload["faces"], payload["looking_away"], tuple(payload["incident"]))
        if key == self._last_key and ts < self._next_report:
            return None
        self._last_key, self._next_report = key, ts + self.params.report_every_s
        return payload
