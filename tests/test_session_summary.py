"""The proctor's report, GET /api/sessions/{id}/summary: exact numbers from stored results
written in the test, then a live face stream's own results through a real server."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlm_monitor.results.summary import summarise
from vlm_monitor.storage.db import Store
from vlm_monitor.testing import wait_until

API, VIEWER = "api-token-0123456789", "viewer-token-0123456789"
T0 = 1_700_000_000.0


def row(stream: str, analyzer: str, ts: float, session: str | None, **result) -> dict:
    return {"stream": stream, "analyzer": analyzer, "video_timestamp": ts,
            "session_id": session, "frame_seq": int(ts), "latency_s": 0.01,
            "result": result}  # fmt: skip


def attention(ts: float, present: bool, incident=(), since=None, stream="exam-1-user-2"):
    return row(stream, "attention", T0 + ts, "1:2", present=present, faces=int(present),
               incident=list(incident), incident_since=since or {})  # fmt: skip


def scripted() -> list[dict]:
    """Ten minutes: present, then away from 120 s (absent reported from 125 s), back at
    300 s; a second face from 400 s (reported from 402 s) to 430 s; readings every 1 s."""
    rows = []
    for s in range(600):
        absent = 125 <= s < 300
        two = 402 <= s < 430
        incident = ["absent"] * absent + ["multiple_faces"] * two
        since = {"absent": T0 + 120} if absent else {}
        since |= {"multiple_faces": T0 + 400} if two else {}
        rows.append(attention(s, not (120 <= s < 300), incident, since))
    for s in range(0, 600, 2):  # heart rate: trusted except while absent
        bpm = None if 120 <= s < 300 else 70.0 + (s % 10)
        rows.append(row("exam-1-user-2", "heart_rate", T0 + s, "1:2", bpm=bpm))
    for s in range(600):  # emotion: happy the first 200 s with a face, neutral after
        face = not (120 <= s < 300)
        label = "happy" if s < 200 else "neutral"
        rows.append(row("exam-1-user-2", "emotion", T0 + s + 0.5, "1:2",
                        face_detected=face, dominant_emotion=label if face else None))  # fmt: skip
    return rows


def test_summary_numbers_from_a_scripted_session() -> None:
    report = summarise("1:2", scripted())
    assert report["streams"] == ["exam-1-user-2"]
    assert report["minutes_observed"] == 10.0
    assert report["minutes_present"] == 7.0
    absent = report["incidents"]["absent"]
    assert absent["count"] == 1 and absent["minutes"] == pytest.approx(3.0, abs=0.01)
    (episode,) = absent["episodes"]
    assert episode["start"] == T0 + 120 and episode["end"] == T0 + 300 and not episode["open"]
    multiple = report["incidents"]["multiple_faces"]
    assert multiple["count"] == 1 and multiple["episodes"][0]["seconds"] == 30.0
    assert report["incidents"]["looking_away"] == {"count": 0, "minutes": 0.0, "episodes": []}
    hr = report["heart_rate"]
    assert hr["min"] == 70.0 and hr["max"] == 78.0 and hr["mean"] == pytest.approx(74.0, abs=0.1)
    assert hr["trusted_share"] == pytest.approx(0.7, abs=0.01)
    emotions = report["emotions"]
    # 120 s happy, 300 s neutral of 420 s with a face.
    assert emotions["distribution"]["happy"] == pytest.approx(120 / 420, abs=0.01)
    assert emotions["dominant"] == "neutral"


def test_open_episode_and_a_gap_that_is_not_counted() -> None:
    rows = [attention(s, True) for s in range(10)]
    rows += [attention(100 + s, False, ["absent"], {"absent": T0 + 95}) for s in range(6)]
    report = summarise("1:2", rows)
    # The last reading before the 91 s silence stands for 10 s at most: 9 + 10 s present,
    # then 6 s absent (the last reading as long as the usual 1 s step).
    assert report["minutes_observed"] == pytest.approx(25 / 60, abs=0.005)
    assert report["minutes_present"] == pytest.approx(19 / 60, abs=0.005)
    (episode,) = report["incidents"]["absent"]["episodes"]
    assert episode["open"] is True and episode["end"] is None and episode["start"] == T0 + 95
    assert report["heart_rate"]["mean"] is None and report["emotions"]["dominant"] is None


def test_summary_endpoint_reads_only_that_session(server, tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = Store(data)
    other = [attention(s, True, stream="exam-3-user-4") for s in range(30)]
    for doc in other:
        doc["session_id"] = "3:4"
    store.add_analyses_sync(scripted() + other, keep=100_000)
    store.close()
    srv = server({"server": {"api_token": API, "viewer_token": VIEWER}})
    with srv.client(VIEWER) as c:
        r = c.get("/api/sessions/1:2/summary")
        assert r.status_code == 200, r.text
        assert r.json() == summarise("1:2", scripted())
        assert c.get("/api/sessions/3:4/summary").json()["minutes_present"] == 0.5
        missing = c.get("/api/sessions/nobody/summary")
        assert missing.status_code == 404 and "nobody" in missing.text
    with srv.client() as c:
        assert c.get("/api/sessions/1:2/summary").status_code == 401


def test_summary_of_a_live_face_stream(server) -> None:
    stream = {
        "id": "exam-5-user-6",
        "url": "synthetic://?fps=15&size=640x360&scene=face",
        "analyzers": ["emotion", "attention", {"name": "heart_rate", "params": {"window_s": 4}}],
    }
    srv = server({"streams": [stream]})
    with srv.client() as c:

        def report() -> dict | None:
            r = c.get("/api/sessions/5:6/summary")
            if r.status_code != 200:
                return None
            doc = r.json()
            ready = doc["minutes_present"] > 0.05 and doc["heart_rate"]["readings"] >= 2
            return doc if ready and doc["emotions"]["dominant"] else None

        doc = wait_until(report, 60, what="a summary with presence, heart rate and emotions")
    assert doc["streams"] == ["exam-5-user-6"]
    assert doc["minutes_present"] == pytest.approx(doc["minutes_observed"], abs=0.02)
    assert doc["incidents"]["absent"]["count"] == 0
    assert doc["incidents"]["multiple_faces"]["count"] == 0
    assert 40 <= doc["heart_rate"]["mean"] <= 180
    assert sum(doc["emotions"]["distribution"].values()) == pytest.approx(1.0, abs=0.01)
