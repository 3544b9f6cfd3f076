"""rPPG maths on synthetic skin traces with a known pulse, drift, flicker and noise."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest

from vlm_monitor.analyzers.rppg import heart_rate

SKIN = np.array([170.0, 120.0, 100.0])  # mean RGB of lit skin
PULSE_SIGNATURE = np.array([0.33, 0.77, 0.53])  # blood-volume colour direction (R, G, B)


def trace(
    bpm: float,
    fps: float = 15.0,
    seconds: float = 10.0,
    amplitude: float = 0.005,
    noise: float = 0.3,
    seed: int = 0,
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(fps * seconds)) / fps
    pulse = amplitude * np.sin(2 * np.pi * bpm / 60 * t + rng.uniform(0, 6.28))
    drift = 1 + 0.03 * np.sin(2 * np.pi * 0.05 * t)  # slow illumination change
    rgb = SKIN[None, :] * drift[:, None] * (1 + pulse[:, None] * PULSE_SIGNATURE[None, :])
    return rgb + rng.normal(0, noise, rgb.shape)  # camera noise, in grey levels


@pytest.mark.parametrize("bpm", [50, 62, 75, 90, 110, 130, 145])
def test_pos_recovers_heart_rate(bpm: float) -> None:
    errors = [abs(heart_rate(trace(bpm, seed=s), 15.0).bpm - bpm) for s in range(3)]
    assert max(errors) < 3.0


@pytest.mark.parametrize("bpm", [50, 60, 85, 120, 145])
def test_chrom_recovers_heart_rate(bpm: float) -> None:
    # CHROM is the less robust method (the literature agrees): the median of 3 must be close
    errors = [abs(heart_rate(trace(bpm, seed=s), 15.0, "chrom").bpm - bpm) for s in range(3)]
    assert float(np.median(errors)) < 3.0


def test_snr_separates_pulse_from_noise() -> None:
    pulse = [
        heart_rate(trace(b, amplitude=0.01, seed=s), 15.0).snr_db
        for b in (60, 90, 120)
        for s in range(3)
    ]
    noise = [
        heart_rate(SKIN + np.random.default_rng(s).normal(0, 0.3, (150, 3)), 15.0).snr_db
        for s in range(5)
    ]
    assert min(pulse) > max(noise) + 3


def test_grey_modulation_is_not_a_pulse() -> None:
    # equal change in R, G and B (a flickering lamp) is cancelled by POS by design
    t = np.arange(150) / 15.0
    flicker = SKIN[None, :] * (1 + 0.01 * np.sin(2 * np.pi * 1.5 * t))[:, None]
    rng = np.random.default_rng(2)
    est = heart_rate(flicker + rng.normal(0, 0.3, flicker.shape) + trace(70, noise=0) - SKIN, 15.0)
    assert abs(est.bpm - 70) < 3.0


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown rPPG method"):
        heart_rate(trace(70), 15.0, "green")


def test_estimator_sliding_window_and_reasons() -> None:
    from vlm_monitor.analyzers.rppg import HeartRateEstimator

    est = HeartRateEstimator(window_s=10, update_s=1)
    rgb = trace(72, seconds=14, amplitude=0.008)
    rng = np.random.default_rng(0)
    t, readings = 1000.0, []
    for sample in rgb:  # jittery arrival, ~15 fps
        t += 1 / 15 + rng.uniform(-0.01, 0.01)
        if (r := est.add(t, sample)) is not None:
            readings.append(r)
    assert readings[0].bpm is None and readings[0].reason == "not enough signal yet"
    good = [r for r in readings if r.bpm is not None]
    assert len(good) >= 3 and all(abs(r.bpm - 72) < 3 for r in good)
    assert all(r.window_s >= 9 for r in good)
    gap = est.add(t + 0.1, None)
    assert gap is None or gap.reason == "no face"
    assert est.add(t + 5, None).reason == "no face"
    dark = HeartRateEstimator(window_s=2)
    readings = [dark.add(2000 + i / 15, np.array([10.0, 8.0, 6.0])) for i in range(40)]
    assert any(r is not None and r.reason == "too dark" for r in readings)


def sway_video(
    bpm: float,
    noise: float = 24.0,
    sway_px: float = 8.0,
    seed: int = 0,
    fps: float = 15.0,
    seconds: float = 10.0,
    size: tuple[int, int] = (640, 360),
):
    """Frames of a real face (the packaged astronaut portrait) whose skin pulses at ``bpm``,
    swaying (``sway_px`` side to side at 0.3 Hz, half that up and down at 0.45 Hz, a degree
    of roll) under per-pixel sensor noise of ``noise`` grey levels (std): (ts, frame) pairs.
    The pulse is drawn before the move, so it stays on the skin as the head moves."""
    import cv2

    from vlm_monitor.camera.scene import PULSE_SIGNATURE

    rng = np.random.default_rng(seed)
    data = (resources.files("vlm_monitor.camera") / "face.jpg").read_bytes()
    face = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    face = cv2.resize(face, None, fx=1.3, fy=1.3, interpolation=cv2.INTER_AREA)
    w, h = size
    base = np.full((h, w, 3), 110, np.float32)
    fh, fw = face.shape[:2]
    x0, y0 = (w - fw) // 2, (h - fh) // 3
    base[y0 : y0 + fh, x0 : x0 + fw] = face
    ycrcb = cv2.cvtColor(base.astype(np.uint8), cv2.COLOR_BGR2YCrCb)
    skin = cv2.inRange(ycrcb, (0, 133, 77), (255, 173, 127)).astype(bool)
    phase = rng.uniform(0, 6.28)
    for i in range(int(fps * seconds)):
        t = i / fps
        pulse = 0.006 * np.sin(2 * np.pi * bpm / 60 * t + phase)
        frame = base * (1 + 0.02 * np.sin(2 * np.pi * 0.07 * t))  # light drift
        frame[skin] *= 1 + pulse * PULSE_SIGNATURE
        dx = sway_px * np.sin(2 * np.pi * 0.3 * t)
        dy = sway_px / 2 * np.sin(2 * np.pi * 0.45 * t + 1.0)
        turn = cv2.getRotationMatrix2D((w / 2, h / 2), np.sin(2 * np.pi * 0.2 * t), 1.0)
        turn[:, 2] += (dx, dy)
        frame = cv2.warpAffine(frame, turn, (w, h), borderMode=cv2.BORDER_REPLICATE)
        frame += rng.normal(0, noise, frame.shape).astype(np.float32)
        yield t, np.clip(frame, 0, 255).astype(np.uint8)


def test_skin_trace_has_no_steps_where_the_region_moves() -> None:
    """The skin region moves on to new landmarks twice a second while the face stays: each
    move reads other pixels (the cheek's shading), a 120 bpm square wave stronger than the
    72 bpm pulse. Read plainly it wins; the skin trace continues each region's level
    from the last and keeps the pulse."""
    from vlm_monitor.analyzers.rppg import SkinTrace, skin_mask
    from vlm_monitor.camera.scene import PULSE_SIGNATURE

    width, height, fps = 320, 240, 15.0
    across = np.linspace(-1, 1, width, dtype=np.float32)[None, :, None]
    # Shading that changes the skin's hue across the cheek, as light from one side does: a
    # change of brightness alone POS would cancel.
    skin = np.full((height, width, 3), (120, 150, 200), np.float32) * (
        1 + across * np.array([0.05, 0.2, 0.0], np.float32)
    )
    region = np.array([[100, 60], [200, 60], [200, 180], [100, 180]], np.int32)
    regions = [([region], []), ([region + np.array([4, 0], np.int32)], [])]  # 4 pixels on
    rng = np.random.default_rng(0)
    trace, plain, steady = SkinTrace(), [], []
    for i in range(int(fps * 12)):
        t = i / fps
        frame = skin * (1 + 0.006 * np.sin(2 * np.pi * 72 / 60 * t) * PULSE_SIGNATURE)
        frame += rng.normal(0, 2, frame.shape).astype(np.float32)  # a sensor's noise
        pixels = np.clip(frame, 0, 255).astype(np.uint8)
        current = regions[int(t * 4) % 2]  # a new region every quarter second
        plain.append(skin_mask(pixels, *current).mean(pixels))  # type: ignore[union-attr]
        steady.append(trace.mean(pixels, current, t))
    assert abs(heart_rate(np.stack(plain), fps).bpm - 72) > 20
    assert abs(heart_rate(np.stack(steady), fps).bpm - 72) < 2


def test_skin_trace_starts_afresh_on_another_picture_size_or_skin() -> None:
    """A camera that changes resolution, or a region that sees other skin (a face found again
    elsewhere): the trace starts afresh instead of failing or carrying a level across."""
    from vlm_monitor.analyzers.rppg import SkinTrace

    def frame(width: int, colour: tuple[int, int, int]) -> np.ndarray:
        return np.full((240, width, 3), colour, np.uint8)

    square = np.array([[10, 10], [60, 10], [60, 60], [10, 60]], np.int32)
    trace = SkinTrace()
    first = trace.mean(frame(320, (120, 150, 200)), ([square], []), 0.0)
    assert first is not None and np.allclose(first, (200, 150, 120))
    smaller = trace.mean(frame(160, (120, 150, 200)), ([square], []), 1.0)  # same regions
    assert smaller is not None and np.allclose(smaller, (200, 150, 120))
    lit = frame(160, (120, 150, 200))
    lit[:, 80:] = (30, 60, 100)  # a dark part of the picture, still skin-coloured
    dark = trace.mean(lit, ([square + np.array([90, 0], np.int32)], []), 2.0)
    assert dark is not None and np.allclose(dark, (100, 60, 30))  # not scaled up to the old
