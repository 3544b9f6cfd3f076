"""The ``local`` provider: no network, no model download. It describes a clip from signals it
measures itself: how much and where things changed, faces (BlazeFace, shipped in the package),
dominant colours. Good enough for the offline demo and for gating, and honest about it."""

from __future__ import annotations

import itertools
import json
from typing import Any

import cv2
import numpy as np

from vlm_monitor.analyzers.faces import FaceDetector
from vlm_monitor.config import VlmProviderConfig
from vlm_monitor.vlm.base import PROVIDER_KINDS, VlmAnswer, VlmRequest

_REGIONS = [
    ["top-left", "top", "top-right"],
    ["left", "centre", "right"],
    ["bottom-left", "bottom", "bottom-right"],
]
_COLOURS = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "grey": (128, 128, 128),
    "red": (0, 0, 200),
    "orange": (0, 140, 255),
    "yellow": (0, 220, 220),
    "green": (0, 170, 0),
    "blue": (200, 60, 0),
    "purple": (150, 40, 130),
    "brown": (30, 70, 120),
}


@PROVIDER_KINDS.register("local")
class LocalProvider:
    def __init__(self, config: VlmProviderConfig) -> None:
        self.name = config.name
        self._detector = FaceDetector()

    def close(self) -> None:
        pass

    def analyze(self, request: VlmRequest) -> VlmAnswer:
        frames = request.frames
        small = [cv2.resize(f, (160, 90), interpolation=cv2.INTER_AREA) for f in frames]
        grey = [cv2.cvtColor(s, cv2.COLOR_BGR2GRAY).astype(np.int16) for s in small]
        diffs = [np.abs(b - a) for a, b in itertools.pairwise(grey)]
        level = float(np.mean([d.mean() for d in diffs])) if diffs else 0.0
        regions = _changed_regions(diffs)
        faces = self._faces(frames)
        colours = _dominant_colours(small[len(small) // 2])
        motion = (
            "no motion"
            if level < 1.0
            else (
                "little motion"
                if level < 4
                else ("moderate motion" if level < 12 else "strong motion")
            )
        )
        parts = [f"{motion} (level {level:.1f}/255) over {len(frames)} frames"]
        if regions:
            parts.append("changes in the " + ", ".join(regions) + " of the picture")
        parts.append(
            f"{faces} face{'s' if faces != 1 else ''} visible" if faces else "no face seen"
        )
        parts.append("mostly " + " and ".join(colours))
        text = "; ".join(parts) + "."
        text = text[0].upper() + text[1:]
        signals: dict[str, Any] = {
            "motion_level": round(level, 2),
            "changed_regions": regions,
            "faces": faces,
            "dominant_colours": colours,
            "alert": bool(faces) or level >= 12,
        }
        if request.schema is None:
            return VlmAnswer(text=text, model="local-signals", structured=signals)
        # Asked for JSON: the review shape it can fill honestly, else its own signals (the
        # schema check then says plainly what it cannot provide).
        doc = (
            {
                "title": motion,
                "scene": "mostly " + " and ".join(colours),
                "summary": text,
                "confidence": 0.3,
                "threat_level": 1 if signals["alert"] else 0,
                "objects": ["person"] * min(faces, 1),
            }
            if request.schema.get("title") == "review"
            else signals
        )
        return VlmAnswer(text=json.dumps(doc), model="local-signals")

    def _faces(self, frames: list[np.ndarray]) -> int:
        # One frame is enough to count faces: the middle one.
        frame = frames[len(frames) // 2]
        scale = 640 / frame.shape[1] if frame.shape[1] > 640 else 1.0
        img = cv2.resize(frame, None, fx=scale, fy=scale) if scale != 1.0 else frame
        return len(self._detector.detect(img))


def _changed_regions(diffs: list[np.ndarray], threshold: float = 8.0) -> list[str]:
    if not diffs:
        return []
    change = np.max(np.stack(diffs), axis=0)
    h, w = change.shape
    out = []
    for r in range(3):
        for c in range(3):
            cell = change[r * h // 3 : (r + 1) * h // 3, c * w // 3 : (c + 1) * w // 3]
            if cell.mean() > threshold:
                out.append(_REGIONS[r][c])
    return out


def _dominant_colours(image: np.ndarray, top: int = 2) -> list[str]:
    names = list(_COLOURS)
    palette = np.asarray([_COLOURS[n] for n in names], np.float32)
    pixels = image.reshape(-1, 3).astype(np.float32)
    nearest = np.argmin(((pixels[:, None, :] - palette[None]) ** 2).sum(axis=2), axis=1)
    counts = np.bincount(nearest, minlength=len(names))
    return [names[i] for i in np.argsort(counts)[::-1][:top] if counts[i] > 0]
