"""The synthetic scene shared by the test camera and ``synthetic://`` sources."""

from __future__ import annotations

import math
import time
from importlib import resources

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
        self._draw_subject(img, seq, ts)
        self._draw_overlay(img, seq, ts)
        return img

    def _draw_subject(self, img: np.ndarray, seq: int, ts: float) -> None:
        w, h, r = self.width, self.height, self._radius
        phase = seq / 30.0
        cx = int(w / 2 + (w / 2 - 2 * r) * math.sin(phase))
        cy = int(h / 2 + (h / 3 - r) * math.cos(phase * 0.7))
        cv2.circle(img, (cx, cy), r, (40, 200, 255), -1)

    def _draw_overlay(self, img: np.ndarray, seq: int, ts: float) -> None:
        w, h = self.width, self.height
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


# "moving": a disc and no face (an empty seat, to the face analyzers); "two_faces": two people.
SCENES = ("moving", "face", "two_faces")

# Blood-volume pulse colour signature (B, G, R): skin gets most of its pulse in green.
PULSE_SIGNATURE = np.array([0.53, 0.77, 0.33], np.float32)


class FaceScene(SyntheticScene):
    """A real face (the public-domain NASA astronaut portrait shipped with the package) whose
    skin pulses at ``bpm``, swaying a little: a live subject for the face, emotion and
    heart-rate analyzers. The pulse follows wall-clock time, so its rate is exact whatever
    the frame rate. ``faces`` side by side: two is a second person at the desk."""

    def __init__(
        self, width: int, height: int, bpm: float = 72.0, pulse: float = 0.006, faces: int = 1
    ) -> None:
        super().__init__(width, height)
        self.bpm, self.pulse, self.faces = bpm, pulse, faces
        data = (resources.files("vlm_monitor.camera") / "face.jpg").read_bytes()
        face = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if face is None:
            raise RuntimeError("the packaged face.jpg cannot be decoded")
        # Three quarters of the height, or less in a narrow (portrait) picture.
        scale = min(0.75 * height / face.shape[0], 0.9 * width / faces / face.shape[1])
        face = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        ycrcb = cv2.cvtColor(face, cv2.COLOR_BGR2YCrCb)
        self._face = face
        self._face_f = face.astype(np.float32)
        self._skin = cv2.inRange(ycrcb, (0, 133, 77), (255, 173, 127))
        self._pulsed = np.empty_like(self._face_f)
        rng = np.random.default_rng(0)
        self._noise = [rng.random(face.shape, np.float32) for _ in range(7)]

    def _draw_subject(self, img: np.ndarray, seq: int, ts: float) -> None:
        fh, fw = self._face.shape[:2]
        sway = round(3 * math.sin(2 * math.pi * 0.2 * ts))
        y0 = max(0, (self.height - fh) // 3)
        gain = self.pulse * math.sin(2 * math.pi * self.bpm / 60 * ts)
        np.multiply(self._face_f, 1 + gain * PULSE_SIGNATURE, out=self._pulsed)
        # Dithering keeps sub-level pulses visible in 8-bit pixels, as sensor noise does.
        np.add(self._pulsed, self._noise[seq % len(self._noise)], out=self._pulsed)
        pulsed = self._pulsed.astype(np.uint8)
        column = self.width // self.faces
        for i in range(self.faces):
            x0 = max(0, min(self.width - fw, i * column + (column - fw) // 2 + sway))
            region = img[y0 : y0 + fh, x0 : x0 + fw]
            region[:] = self._face
            cv2.copyTo(pulsed, self._skin, region)


def make_scene(
    width: int, height: int, kind: str = "moving", bpm: float = 72.0, pulse: float = 0.006
) -> SyntheticScene:
    if kind in ("face", "two_faces"):
        return FaceScene(width, height, bpm, pulse, faces=2 if kind == "two_faces" else 1)
    if kind == "moving":
        return SyntheticScene(width, height)
    raise ValueError(f"unknown scene {kind!r}: use {', '.join(SCENES)}")
