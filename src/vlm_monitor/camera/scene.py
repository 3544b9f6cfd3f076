"""The synthetic scene shared by the test camera and ``synthetic://`` sources."""

from __future__ import annotations

import math
import time

import cv2
import numpy as np

from vlm_monitor.camera import strip


class SyntheticScene:
    """Renders a moving scene with the timestamp strip; cheap enough for 1080p30 on one core."""

    def __init__(self, width: int, height: int) -> None:
        if width < 160 or height < 90 or width % 2 or height % 2:
            raise ValueError(f"scene size {width}x{height}: need even sizes of at least 160x90")
        self.width, self.height = width, height
        ramp_x = np.linspace(40, 200, width, dtype=np.float32)[None, :]
        ramp_y = np.linspace(30, 120, height, dtype=np.float32)[:, None]
        bg = np.empty((height, width, 3), np.uint8)
        bg[..., 0] = (ramp_x * 0.6 + ramp_y * 0.4).astype(np.uint8)
        bg[..., 1] = (ramp_y * 0.9).astype(np.uint8)
        bg[..., 2] = (255 - ramp_x * 0.8).astype(np.uint8)
        self._background = bg
        self._radius = max(8, height // 10)

    def render(self, seq: int, ts: float | None = None) -> np.ndarray:
        ts = time.time() if ts is None else ts
        img = self._background.copy()
        w, h, r = self.width, self.height, self._radius
        phase = seq / 30.0
        cx = int(w / 2 + (w / 2 - 2 * r) * math.sin(phase))
        cy = int(h / 2 + (h / 3 - r) * math.cos(phase * 0.7))
        cv2.circle(img, (cx, cy), r, (40, 200, 255), -1)
        bar_x = int((seq * 4) % w)
        cv2.rectangle(
            img, (bar_x, h - h // 8), (min(w - 1, bar_x + w // 10), h - 1), (255, 255, 255), -1
        )
        label = f"#{seq} {time.strftime('%H:%M:%S', time.localtime(ts))}"
        cv2.putText(
            img,
            label,
            (10, h - h // 8 - 10),
            cv2.FONT_HERSHEY_SIMPLEX,
            max(0.4, h / 720),
            (255, 255, 255),
            max(1, h // 360),
            cv2.LINE_AA,
        )
        strip.draw(img, seq, ts)
        return img
