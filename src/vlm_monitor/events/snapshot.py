"""The picture behind an incident: the frame that triggered it with the result's boxes drawn,
as a JPEG file under ``{data_dir}/events/``. Blocking (conversion, encoding, disk): call from a
thread."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vlm_monitor.clips.store import prune_oldest
from vlm_monitor.types import Frame

BOX_COLOUR = (0, 0, 255)  # BGR: red reads as "look here" on most scenes


def norm_boxes(evidence: dict[str, Any] | None) -> list[list[float]]:
    """``[x, y, w, h]`` in 0..1 of the picture, from ``boxes_norm`` and ``box_norm``."""
    if not evidence:
        return []
    out: list[list[float]] = []
    for norm_key, single in (("boxes_norm", False), ("box_norm", True)):
        value = evidence.get(norm_key)
        boxes = [value] if single and value else (value or [])
        for box in boxes:
            if isinstance(box, list | tuple) and len(box) == 4:
                out.append([float(v) for v in box])
    return out


def boxes_of(evidence: dict[str, Any] | None, size: tuple[int, int]) -> list[list[int]]:
    """``[x, y, w, h]`` in the picture's pixels. Normalised boxes are preferred: the frame
    kept may be smaller than the source the pixel boxes were measured on."""
    width, height = size
    return [
        [round(x * width), round(y * height), round(w * width), round(h * height)]
        for x, y, w, h in norm_boxes(evidence)
    ]


def draw_boxes(pixels: np.ndarray, evidence: dict[str, Any] | None) -> None:
    """The evidence's boxes drawn on ``pixels`` (BGR, writable), in place."""
    height, width = pixels.shape[:2]
    thickness = max(2, round(max(width, height) / 400))
    for x, y, w, h in boxes_of(evidence, (width, height)):
        cv2.rectangle(pixels, (x, y), (x + w, y + h), BOX_COLOUR, thickness)


def render(frame: Frame, evidence: dict[str, Any] | None, quality: int) -> bytes:
    pixels: np.ndarray = frame.bgr().copy()  # shared, read-only: draw on our own copy
    draw_boxes(pixels, evidence)
    ok, buf = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {frame.stream_id}#{frame.seq}")
    return bytes(buf.tobytes())


class SnapshotFiles:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def path(self, event_id: str) -> Path:
        return self.directory / f"{event_id}.jpg"

    def clip_path(self, event_id: str) -> Path:
        return self.directory / f"{event_id}.mp4"

    def write(self, event_id: str, jpeg: bytes) -> None:
        # Written aside then renamed: a reader never gets half a picture.
        tmp = self.directory / f".{event_id}.jpg.tmp"
        tmp.write_bytes(jpeg)
        os.replace(tmp, self.path(event_id))

    def read(self, event_id: str) -> bytes | None:
        try:
            return self.path(event_id).read_bytes()
        except FileNotFoundError:
            return None

    def enforce_cap(self, max_total_mb: float) -> dict[str, set[str]]:
        """Deletes the oldest snapshots and clips while all of them are over ``max_total_mb``;
        returns, by event id, the suffixes gone (``.jpg``, ``.mp4``)."""
        files = [*self.directory.glob("*.jpg"), *self.directory.glob("*.mp4")]
        mtimes = {}
        for p in files:
            with contextlib.suppress(FileNotFoundError):
                mtimes[p] = p.stat().st_mtime
        oldest_first = sorted(mtimes, key=mtimes.__getitem__)
        gone: dict[str, set[str]] = {}
        for p in prune_oldest(oldest_first, math.inf, max_total_mb):
            gone.setdefault(p.stem, set()).add(p.suffix)
        return gone

    def delete(self, event_ids: list[str]) -> None:
        for event_id in event_ids:
            for path in (self.path(event_id), self.clip_path(event_id)):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
