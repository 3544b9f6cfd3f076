"""The analyzer classes on frames made in the test: face scene, no face, text, motion."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from vlm_monitor.analyzers.base import SharedModels, StreamContext
from vlm_monitor.analyzers.builtin import ANALYZERS
from vlm_monitor.analyzers.faces import iou
from vlm_monitor.camera.scene import FaceScene
from vlm_monitor.config import AnalyzerConfig, ConfigError, build_config
from vlm_monitor.types import Frame

MODELS = SharedModels()


def make(name: str, stream: str = "s", **params: object):
    config = AnalyzerConfig.model_validate({"name": name, "params": params})
    return ANALYZERS[name](config, StreamContext(stream, MODELS))


def frames(images, fps: float = 15.0, start: float = 1000.0):
    for i, image in enumerate(images, start=1):
        yield Frame("s", i, start + i / fps, image)


def test_emotion_on_the_face_scene_with_and_without_smoothing() -> None:
    scene = FaceScene(640, 360)
    raw, smooth = make("emotion", smoothing=0), make("emotion", smoothing=0.8)
    for frame in frames(scene.render(i, 1000 + i / 15) for i in range(1, 6)):
        image = frame.bgr()
        a, b = raw.analyze(image, frame), smooth.analyze(image, frame)
    assert set(a) == {"dominant_emotion", "face_detected", "confidence", "emotions", "box",
                      "box_norm"}  # fmt: skip
    assert a["face_detected"] and a["dominant_emotion"] == "happy"
    x, y, w, h = a["box"]
    assert a["box_norm"] == [round(x / 640, 4), round(y / 360, 4), round(w / 640, 4),
                             round(h / 360, 4)]  # fmt: skip
    assert sum(b["emotions"].values()) == pytest.approx(1.0, abs=0.01)
    blank = Frame("s", 99, 2000.0, np.full((360, 640, 3), 90, np.uint8))
    gone = smooth.analyze(blank.bgr(), blank)
    assert gone["face_detected"] is False and gone["dominant_emotion"] is None
    assert gone["box"] is None and gone["box_norm"] is None


def test_face_box_in_source_pixels_when_analysed_smaller() -> None:
    """A 1280x720 source analysed at 640x360: the box comes back in the source's pixels."""
    big = FaceScene(1280, 720).render(1, 1000.0)
    frame = Frame("s", 1, 1000.0, big)
    small = make("emotion", smoothing=0).analyze(frame.bgr_fit((640, 360)), frame)
    full = make("emotion", smoothing=0).analyze(big, frame)
    assert small["face_detected"] and full["face_detected"]
    # The detector's scale steps differ with the picture's size: the same face, not the
    # same pixels. Analysed at 640x360, the box would be at half these coordinates.
    assert iou(tuple(small["box"]), tuple(full["box"])) > 0.8, (small["box"], full["box"])
    assert small["box_norm"] == pytest.approx(full["box_norm"], abs=0.02)


def test_smoothing_damps_a_sudden_change() -> None:
    analyzer = make("emotion", smoothing=0.8)
    box = (0, 0, 64, 64)
    outputs = iter(
        [
            {"emotions": {"happy": 1.0, "sad": 0.0}},
            {"emotions": {"happy": 0.0, "sad": 1.0}},
        ]
    )

    class Scripted:
        def face(self, image, frame):
            return type("F", (), {"box": box})()

        models = type("M", (), {"emotion": staticmethod(lambda image, b: next(outputs))})()

    analyzer.context = Scripted()  # type: ignore[assignment]
    image = np.zeros((64, 64, 3), np.uint8)
    analyzer.analyze(image, Frame("s", 1, 1.0, image))
    second = analyzer.analyze(image, Frame("s", 2, 1.2, image))
    assert second["dominant_emotion"] == "happy"  # one frame of "sad" does not flip it
    assert second["emotions"]["sad"] == pytest.approx(0.2)


def test_heart_rate_reports_null_with_a_reason_without_a_face() -> None:
    analyzer = make("heart_rate")
    blank = np.full((360, 640, 3), 120, np.uint8)
    readings = [r for f in frames([blank] * 30) if (r := analyzer.analyze(blank, f))]
    assert readings, "a reading is due every update_s even without a face"
    assert all(r["bpm"] is None and r["reason"] == "no face" for r in readings)
    assert all(r["face_detected"] is False and r["confidence"] == 0.0 for r in readings)


def test_heart_rate_from_the_face_scene() -> None:
    scene = FaceScene(640, 360, bpm=96)
    analyzer = make("heart_rate", window_s=8)
    readings = []
    for i in range(15 * 11):
        ts = 1000 + i / 15
        frame = Frame("s", i + 1, ts, scene.render(i + 1, ts))
        reading = analyzer.analyze(frame.bgr(), frame)
        if reading is not None:
            readings.append(reading)
    ok = [r for r in readings if r["bpm"] is not None]
    assert ok, readings
    assert all(abs(r["bpm"] - 96) <= 3 for r in ok)
    assert set(ok[-1]) == {
        "bpm",
        "confidence",
        "snr_db",
        "window_s",
        "method",
        "face_detected",
        "reason",
        "box",
        "box_norm",
    }
    assert ok[-1]["box"][2] > 0 and 0 < ok[-1]["box_norm"][2] < 1
    assert ok[-1]["window_s"] >= 7 and ok[-1]["confidence"] > 0.5


def test_motion_reports_start_and_stop_only() -> None:
    analyzer = make("motion", report_every_s=100)
    still = np.full((360, 640, 3), 100, np.uint8)
    moved = still.copy()
    cv2.rectangle(moved, (100, 100), (300, 250), (255, 255, 255), -1)
    sequence = [still] * 5 + [moved, still] * 3 + [still] * 40
    reports = [r for f in frames(sequence) if (r := analyzer.analyze(f.bgr(), f)) is not None]
    assert reports[0]["moving"] is True and reports[0]["boxes"]
    assert len(reports[0]["boxes_norm"]) == len(reports[0]["boxes"])
    assert reports[-1]["moving"] is False
    assert len(reports) == 2  # one incident: start and stop, not one report per flicker


def test_ocr_reads_rendered_text_and_checks_its_region() -> None:
    image = np.full((360, 640, 3), 255, np.uint8)
    cv2.putText(image, "EXAM 2041 ROOM B", (40, 200), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (0, 0, 0), 3)
    frame = Frame("s", 1, time.time(), image)
    result = make("ocr").analyze(image, frame)
    assert "EXAM" in result["text"] and "2041" in result["text"], result
    assert all(w["confidence"] >= 50 for w in result["words"])
    region = make("ocr", roi=[0, 150, 330, 80]).analyze(image, frame)
    assert "2041" in region["text"] and "ROOM" not in region["text"]
    assert region["words"][0]["box"][1] >= 150  # boxes are relative to the frame, not the roi
    with pytest.raises(ValueError, match="outside"):
        make("ocr", roi=[700, 0, 10, 10]).analyze(image, frame)


def test_ocr_roi_and_boxes_are_in_source_pixels() -> None:
    """A 1280x720 source analysed at 640x360: the roi is given, and boxes come back, in
    the source's pixels."""
    big = np.full((720, 1280, 3), 255, np.uint8)
    cv2.putText(big, "EXAM 2041 ROOM B", (80, 400), cv2.FONT_HERSHEY_SIMPLEX, 3.2, (0, 0, 0), 6)
    frame = Frame("s", 1, time.time(), big)
    region = make("ocr", roi=[0, 300, 660, 160]).analyze(frame.bgr_fit((640, 360)), frame)
    assert "2041" in region["text"] and "ROOM" not in region["text"], region
    x, y, w, h = region["words"][0]["box"]
    assert 60 <= x <= 120 and 300 <= y <= 360 and w > 100, region["words"][0]
    assert region["words"][0]["box_norm"] == pytest.approx([x / 1280, y / 720, w / 1280, h / 720],
                                                           abs=1e-4)  # fmt: skip


def test_analyzer_config_errors_name_the_problem() -> None:
    cases = {
        "faces": "analyzers.0.name",
        "emotion,emotion": "listed twice",
    }
    for names, expected in cases.items():
        with pytest.raises(ConfigError, match=expected):
            build_config(
                {"streams": [{"id": "a", "url": "synthetic://", "analyzers": names.split(",")}]}
            )
    with pytest.raises(ConfigError, match="heart_rate params: window_s"):
        build_config(
            {
                "streams": [
                    {
                        "id": "a",
                        "url": "synthetic://",
                        "analyzers": [{"name": "heart_rate", "params": {"window_s": 1}}],
                    }
                ]
            }
        )
    with pytest.raises(ConfigError, match="ocr params: colour"):
        build_config(
            {
                "streams": [
                    {
                        "id": "a",
                        "url": "synthetic://",
                        "analyzers": [{"name": "ocr", "params": {"colour": 1}}],
                    }
                ]
            }
        )
