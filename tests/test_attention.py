"""The attention analyzer on real faces (the astronaut, the packaged face): presence, the
face count, head pose, and its incidents after their holds; then end to end through a
server and a Socket.IO client."""

from __future__ import annotations

import asyncio

import cv2
import numpy as np
import pytest
import socketio

from test_face_pipeline import mirrored, on_canvas, turn_head
from vlm_monitor.analyzers.attention import AttentionAnalyzer, Hold
from vlm_monitor.analyzers.base import SharedModels, StreamContext
from vlm_monitor.analyzers.builtin import build_analyzers
from vlm_monitor.analyzers.params import AttentionParams
from vlm_monitor.config import AnalyzerConfig, ConfigError, build_config
from vlm_monitor.types import Frame

MODELS = SharedModels()
SIZE = (640, 360)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:, :, ::-1])  # RGB -> BGR


@pytest.fixture(scope="module")
def portrait(astronaut) -> np.ndarray:
    """The astronaut's head and shoulders on a 640x360 frame, the webcam's framing."""
    return on_canvas(astronaut[20:330, 90:370], SIZE, 1.0, 180, 20)


def make(**params: object) -> AttentionAnalyzer:
    configs = [AnalyzerConfig.model_validate({"name": "attention", "params": params})]
    _context, analyzers = build_analyzers("s", configs, MODELS)
    analyzer = analyzers["attention"]
    assert isinstance(analyzer, AttentionAnalyzer)
    return analyzer


def run(analyzer: AttentionAnalyzer, image: np.ndarray, start: float, seconds: float, fps=5.0):
    """Feeds ``image`` for ``seconds`` at ``fps`` from ``start`` (a fake clock: frame
    timestamps), returning every report."""
    reports = []
    for i in range(round(seconds * fps)):
        frame = Frame("s", i, start + i / fps, image)
        report = analyzer.analyze(image, frame)
        if report is not None:
            reports.append((frame.ts, report))
    return reports


def test_present_single_face_facing_the_camera(portrait) -> None:
    analyzer = make()
    reports = run(analyzer, portrait, 1000.0, 2.0)
    last = reports[-1][1]
    assert last["present"] is True and last["faces"] == 1
    assert abs(last["yaw"]) < 10 and abs(last["pitch"]) < 15, last
    assert last["gaze"] is not None and set(last["gaze"]) == {"x", "y"}
    assert last["looking_away"] is False and last["incident"] == []
    x, _, w, _ = last["boxes"][0]
    assert 180 <= x + w / 2 <= 460 and w > 60  # source pixels, around the pasted face
    assert len(last["boxes_norm"]) == 1 and 0 < last["boxes_norm"][0][2] < 1
    # Unchanged: one report per report_every_s, not one per frame.
    assert len(reports) <= 3


def test_boxes_in_source_pixels_when_analysed_smaller(portrait) -> None:
    analyzer = make()
    small = cv2.resize(portrait, (320, 180), interpolation=cv2.INTER_AREA)
    frame = Frame("s", 1, 1000.0, portrait)
    full = analyzer.analyze(portrait, frame)
    other = make().analyze(small, Frame("s", 1, 1000.0, portrait))
    assert full is not None and other is not None and other["faces"] == 1
    assert abs(other["boxes"][0][0] - full["boxes"][0][0]) < 12
    assert other["boxes_norm"][0][2] == pytest.approx(full["boxes_norm"][0][2], abs=0.03)


def test_turned_head_yaw_sign_and_looking_away_after_hold(astronaut) -> None:
    turned = turn_head(astronaut, -35)  # towards the picture's right
    right = on_canvas(turned, (768, 512), 1.0, 128, 0)
    left = mirrored(right)
    r = run(make(), right, 1000.0, 0.4)[-1][1]
    l_ = run(make(), left, 1000.0, 0.4)[-1][1]
    assert r["yaw"] > 15 and l_["yaw"] < -15, (r["yaw"], l_["yaw"])
    analyzer = make(yaw_limit=15, away_s=3)
    reports = run(analyzer, right, 1000.0, 5.0)
    assert all(rep["looking_away"] for _, rep in reports)
    before = [rep for ts, rep in reports if ts < 1002.9]
    after = [(ts, rep) for ts, rep in reports if "looking_away" in rep["incident"]]
    assert before and all(rep["incident"] == [] for rep in before)
    assert after and after[0][0] >= 1003.0
    assert after[0][1]["incident_since"]["looking_away"] == 1000.0
    # Facing the camera again closes it at once: the list no longer names it.
    back = run(analyzer, on_canvas(astronaut, (768, 512), 1.0, 128, 0), 1005.0, 0.4)
    assert back and back[0][1]["incident"] == [] and back[0][1]["looking_away"] is False


def test_two_faces_then_multiple_faces_incident_after_hold(astronaut) -> None:
    frame = on_canvas(astronaut[20:330, 90:370], SIZE, 0.9, 20, 40)
    second = cv2.resize(astronaut[20:330, 90:370], None, fx=0.9, fy=0.9)
    frame[40 : 40 + second.shape[0], 360 : 360 + second.shape[1]] = second
    analyzer = make(multiple_s=2, detect_every_s=0.2)
    reports = run(analyzer, frame, 1000.0, 3.0)
    assert all(rep["faces"] == 2 and len(rep["boxes"]) == 2 for _, rep in reports)
    opened = [ts for ts, rep in reports if "multiple_faces" in rep["incident"]]
    assert opened and min(opened) >= 1002.0
    assert all("multiple_faces" not in rep["incident"] for ts, rep in reports if ts < 1001.9)


def test_face_removed_absent_after_hold(portrait) -> None:
    analyzer = make(absent_s=5)
    run(analyzer, portrait, 1000.0, 1.0)
    blank = np.full_like(portrait, 110)
    reports = run(analyzer, blank, 1001.0, 8.0)
    assert reports[0][1]["present"] is False and reports[0][1]["faces"] == 0
    assert reports[0][1]["yaw"] is None and reports[0][1]["gaze"] is None
    opened = [ts for ts, rep in reports if "absent" in rep["incident"]]
    # The tracker keeps a vanished face for its 2 s hold, then 5 s without one.
    assert opened and 1005.9 <= min(opened) <= 1008.5, opened
    assert all(rep["incident"] == [] for ts, rep in reports if ts < 1005.9)
    back = run(analyzer, portrait, 1010.0, 1.2)
    assert back[0][1]["present"] is True and back[0][1]["incident"] == []


def test_hold_counts_from_when_the_condition_began() -> None:
    hold = Hold(2.0)
    hold.update(True, 10.0)
    hold.update(True, 11.9)
    assert not hold.open and hold.since == 10.0
    hold.update(True, 12.0)
    assert hold.open
    hold.update(False, 12.5)
    assert not hold.open and hold.since is None


def test_params_are_validated() -> None:
    assert AttentionParams().yaw_limit == 30 and AttentionParams().absent_s == 5
    for bad in ({"yaw_limit": 0}, {"away_s": -1}, {"gaze_limit": 2}, {"nope": 1}):
        with pytest.raises(ConfigError, match="attention params"):
            analyzers = [{"name": "attention", "params": bad}]
            build_config({"streams": [{"id": "s", "url": "synthetic://", "analyzers": analyzers}]})
    context = StreamContext("s", MODELS)
    assert AttentionAnalyzer(AnalyzerConfig(name="attention"), context).fps == 5.0


async def test_attention_result_through_a_server(server) -> None:
    srv = server(
        {
            "streams": [
                {
                    "id": "exam-9-user-3",
                    "url": "synthetic://?fps=15&size=640x360&scene=face",
                    "analyzers": ["attention"],
                }
            ]
        }
    )
    got: dict[str, list[dict]] = {"/": [], "/monitor": [], "room": []}
    client = socketio.AsyncClient(reconnection=False)

    def recorder(key: str):
        async def record(data: dict) -> None:
            got[key].append(data)

        return record

    client.on("attention_result", recorder("/"), namespace="/")
    client.on("attention_result", recorder("/monitor"), namespace="/monitor")
    client.on("student.attention", recorder("room"), namespace="/monitor")
    await client.connect(
        srv.url + "?stream_name=exam-9-user-3",
        namespaces=["/", "/monitor"],
        transports=["websocket"],
    )
    try:
        for _ in range(300):
            if all(got.values()):
                break
            await asyncio.sleep(0.1)
    finally:
        await client.disconnect()
    assert all(got.values()), {k: len(v) for k, v in got.items()}
    payload = got["room"][-1]
    assert set(payload) == {"session_id", "stream_name", "result", "video_timestamp"}
    assert payload["stream_name"] == "exam-9-user-3" and payload["session_id"] == "9:3"
    result = payload["result"]
    assert result["present"] is True and result["faces"] == 1
    assert {"yaw", "pitch", "roll", "gaze", "looking_away", "boxes", "incident"} <= set(result)


def test_incidents_open_and_close_events(portrait) -> None:
    """The events service reads ``incident`` as it comes: the kind opens an event while
    listed and closes it when it leaves the list."""
    from vlm_monitor.events.model import EventTracker

    tracker, analyzer = EventTracker(), make(absent_s=1)
    blank = np.full_like(portrait, 110)
    changes = []
    for ts, result in run(analyzer, blank, 1000.0, 2.0) + run(analyzer, portrait, 1002.0, 1.0):
        doc = {"stream": "s", "analyzer": "attention", "frame_seq": 1, "result": result}
        changes += [(c.action, c.incident.kind) for c in tracker.analysis(doc, now=ts)]
    assert ("open", "absent") in changes and changes[-1] == ("close", "absent")
    assert {kind for _, kind in changes} == {"absent"}
