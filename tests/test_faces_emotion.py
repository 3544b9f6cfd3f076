"""Face detection, tracking and emotion on a real face image shipped in scikit-image."""

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
