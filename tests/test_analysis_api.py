"""Analyzers at runtime through the API, the exam-proctoring consumer's endpoints, sessions,
metrics."""

from __future__ import annotations

import pytest

from vlm_monitor.analyzers.base import SharedModels, StreamContext
from vlm_monitor.analyzers.builtin import OcrAnalyzer
from vlm_monitor.analyzers.ocr import OcrUnavailableError
from vlm_monitor.config import AnalyzerConfig
from vlm_monitor.testing import wait_until

FACE = "synthetic://?fps=15&size=640x360&scene=face"
SYN = "synthetic://?fps=15&size=640x360"


def test_analyzers_enabled_and_changed_at_runtime(server) -> None:
    srv = server()
    with srv.client() as c:
        assert c.post("/api/streams", json={"id": "cam", "url": FACE}).status_code == 201
        assert c.get("/api/streams/cam").json()["analyzers"] == {}
        r = c.put(
            "/api/streams/cam/analyzers",
            json={"analyzers": ["motion", {"name": "emotion", "fps": 2}]},
        )
        assert r.status_code == 200, r.text
        assert set(r.json()["analyzers"]) == {"motion", "emotion"}
        stats = wait_until(
            lambda: (
                (a := c.get("/api/streams/cam").json()["analyzers"])["emotion"]["results"] >= 3
                and a
            ),
            20,
            what="emotion results",
        )
        assert stats["emotion"]["fps_target"] == 2.0
        rows = c.get("/api/analyses", params={"stream": "cam", "analyzer": "emotion"}).json()
        assert rows and rows[0]["result"]["dominant_emotion"] == "happy"
        assert rows[0]["frame_seq"] > 0 and rows[0]["video_timestamp"] > 0
        subs = {s["name"] for s in c.get("/api/streams/cam").json()["subscriptions"]}
        assert {"analyzer:motion", "analyzer:emotion"} <= subs

        # Bad requests change nothing.
        for body, expected in (
            ({"analyzers": ["faces"]}, "analyzers.0.name"),
            ({"analyzers": ["motion", "motion"]}, "listed twice"),
            ({"analyzers": [{"name": "ocr", "params": {"psm": 99}}]}, "ocr params: psm"),
            ({"analyzers": "motion"}, "analyzers"),
        ):
            bad = c.put("/api/streams/cam/analyzers", json=body)
            assert bad.status_code == 422 and expected in bad.json()["error"], bad.text
        assert c.put("/api/streams/nope/analyzers", json={"analyzers": []}).status_code == 404
        assert set(c.get("/api/streams/cam").json()["analyzers"]) == {"motion", "emotion"}
        metrics = c.get("/metrics").text
        assert 'vlm_analyzer_results_total{analyzer="emotion",stream="cam"}' in metrics
        assert 'vlm_analyzer_latency_seconds{analyzer="emotion",quantile="0.99",stream="cam"}' in (
            metrics
        )
        available = {a["name"] for a in c.get("/api/analyzers").json()["available"]}
        assert available == {"motion", "emotion", "heart_rate", "attention", "ocr"}

        # Off again: the subscriptions go away.
        assert c.put("/api/streams/cam/analyzers", json={"analyzers": []}).status_code == 200
        subs = {s["name"] for s in c.get("/api/streams/cam").json()["subscriptions"]}
        assert not any(name.startswith("analyzer:") for name in subs)
        c.put("/api/streams/cam/analyzers", json={"analyzers": ["motion"]})
    srv.stop()
    # The runtime change was stored with the stream.
    again = server(port=srv.port)
    with again.client() as c:
        assert set(c.get("/api/streams/cam").json()["analyzers"]) == {"motion"}


def test_rtsp_start_runs_the_default_analyzers_with_a_session(server, rtsp_server) -> None:
    url = rtsp_server(path="exam-42-user-9")
    srv = server()
    with srv.client() as c:
        r = c.post(
            "/api/rtsp/start",
            json={"stream_name": "exam-42-user-9", "rtsp_url": url, "transport": "tcp"},
        )
        assert r.status_code == 200, r.text
        assert set(r.json()["status"]["analyzers"]) == {"emotion", "heart_rate", "attention"}
        status = wait_until(
            lambda: (
                (s := c.get("/api/rtsp/status").json())["streams"]["exam-42-user-9"]["analyzers"][
                    "emotion"
                ]["frames"]
                > 3
                and s
            ),
            30,
            what="emotion analysing the RTSP stream",
        )
        assert status["analyzing_streams"] == 1 and status["active_streams"] == 1
        stream = status["streams"]["exam-42-user-9"]
        assert stream["session"] == {
            "session_id": "42:9",
            "student_id": "9",
            "exam_id": "42",
            "source": "auto",
        }
        # No face in GStreamer's test pattern: the result says so.
        rows = c.get("/api/analyses", params={"stream": "exam-42-user-9", "analyzer": "emotion"})
        assert rows.json()[0]["result"]["face_detected"] is False
        # A manual binding wins, and survives in /api/sessions.
        r = c.post(
            "/api/rtsp/start",
            json={
                "stream_name": "exam-42-user-9",
                "rtsp_url": url,
                "analyzers": ["motion"],
                "session_id": "sess-1",
                "student_id": "s9",
            },
        )
        assert r.json()["already_running"] is True
        assert set(c.get("/api/streams/exam-42-user-9").json()["analyzers"]) == {"motion"}
        sessions = c.get("/api/sessions").json()
        assert sessions["streams"]["exam-42-user-9"]["session_id"] == "sess-1"
        assert sessions["bindings"]["exam-42-user-9"]["student_id"] == "s9"
        assert c.post("/api/rtsp/stop", json={"stream_name": "exam-42-user-9"}).status_code == 200
        assert c.get("/api/rtsp/status").json()["analyzing_streams"] == 0


def test_session_bindings(server) -> None:
    srv = server({"streams": [{"id": "desk-3", "url": SYN}]})
    with srv.client() as c:
        assert c.get("/api/sessions").json()["streams"] == {"desk-3": None}
        r = c.put("/api/sessions/desk-3", json={"session_id": "abc", "student_id": "u1"})
        assert r.status_code == 200 and r.json()["source"] == "manual"
        assert c.get("/api/streams/desk-3").json()["session"]["session_id"] == "abc"
        assert c.put("/api/sessions/desk-3", json={}).status_code == 422
        assert c.put("/api/sessions/bad%20name", json={"session_id": "x"}).status_code == 422
        assert c.delete("/api/sessions/desk-3").json()["now"] is None
        assert c.delete("/api/sessions/desk-3").status_code == 404
        assert c.get("/api/analyses", params={"analyzer": "faces"}).status_code == 422


def test_ocr_without_tesseract_fails_at_start_with_the_fix(monkeypatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(OcrUnavailableError, match="apt install tesseract-ocr"):
        OcrAnalyzer(AnalyzerConfig(name="ocr"), StreamContext("s", SharedModels()))
