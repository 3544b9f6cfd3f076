"""Face detection (BlazeFace), tracking and emotion on a real face image shipped in
scikit-image."""

from __future__ import annotations

import numpy as np
import pytest

from vlm_monitor.analyzers.emotion import LABELS, EmotionModel, no_face
from vlm_monitor.analyzers.faces import FaceDetector, FaceTracker, iou


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:, :, ::-1])  # RGB -> BGR


def test_face_found_and_emotion_is_happy_and_deterministic(astronaut) -> None:
    (box, *_) = FaceDetector().detect(astronaut)
    assert 150 <= box[0] <= 200 and 40 <= box[1] <= 90  # the face, not the flag or the helmet
    model = EmotionModel()
    result = model.predict(astronaut, box)
    assert result["face_detected"] and result["dominant_emotion"] == "happy"
    assert result["confidence"] > 0.9
    assert set(result["emotions"]) == set(LABELS)
    assert sum(result["emotions"].values()) == pytest.approx(1.0, abs=0.01)
    assert model.predict(astronaut, box) == result


def test_no_face_in_a_plain_picture() -> None:
    assert FaceDetector().detect(np.full((360, 640, 3), 128, np.uint8)) == []
    assert no_face()["face_detected"] is False


def test_tracker_holds_a_stable_box_and_lets_go(astronaut) -> None:
    tracker = FaceTracker(FaceDetector(), detect_every_s=1.0, hold_s=2.0)
    boxes = [tracker.update(astronaut, t / 10) for t in range(30)]  # 3 s at 10 fps
    assert all(b is not None for b in boxes)
    first = boxes[0].box
    assert all(iou(b.box, first) > 0.8 for b in boxes)  # no jumps
    blank = np.full_like(astronaut, 128)
    held = [tracker.update(blank, 3 + t / 10) for t in range(35)]  # the face leaves
    assert held[0] is not None  # held for a while...
    assert held[-1] is None  # ...then released


def test_iou() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(1 / 3)


def test_heart_rate_from_a_synthetic_face_video(astronaut) -> None:
    """A real face whose skin pulses at 72 bpm (0.6 %, blood-volume colour signature), with
    sensor noise, illumination drift and a small head sway, through the stream's face
    tracking + the landmark skin region + POS."""
    import cv2

    from vlm_monitor.analyzers.faces import FaceModels, FaceTracking
    from vlm_monitor.analyzers.rppg import HeartRateEstimator, SkinTrace

    rng = np.random.default_rng(3)
    ycrcb = cv2.cvtColor(astronaut, cv2.COLOR_BGR2YCrCb)
    skin = cv2.inRange(ycrcb, (0, 133, 77), (255, 173, 127)).astype(bool)
    signature = np.array([0.53, 0.77, 0.33])  # B, G, R
    models = FaceModels()
    tracking = FaceTracking(lambda: models, detect_every_s=1.0)
    estimator, skin_trace = HeartRateEstimator(window_s=10, update_s=1), SkinTrace()
    readings = []
    base = astronaut.astype(np.float32)
    for i in range(15 * 14):  # 14 s at 15 fps
        t = i / 15
        pulse = 0.006 * np.sin(2 * np.pi * 72 / 60 * t)
        frame = base * (1 + 0.02 * np.sin(2 * np.pi * 0.07 * t))  # light drift
        frame[skin] *= 1 + pulse * signature
        frame += rng.normal(0, 2.0, frame.shape)
        shift = round(2 * np.sin(2 * np.pi * 0.3 * t))  # head sway, pixels
        frame = np.roll(np.clip(frame, 0, 255).astype(np.uint8), shift, axis=1)
        face = tracking.update(frame, t).main
        rgb = None if face is None else skin_trace.mean(frame, face.skin_regions(), t)
        reading = estimator.add(t, rgb)
        if reading is not None and reading.bpm is not None:
            readings.append(reading.bpm)
    assert len(readings) >= 3
    assert all(abs(bpm - 72) <= 3 for bpm in readings), readings
    nothing = skin_trace.mean(np.zeros_like(astronaut), ([], []), 100.0)
    assert estimator.add(100.0, nothing).reason == "no face"
