"""The exam-proctoring Socket.IO channel from live streams, with real python-socketio clients."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict

import httpx
import socketio
import websockets

from vlm_monitor.testing import wait_until

PAYLOAD_KEYS = {"session_id", "stream_name", "result", "video_timestamp"}
# The original result fields, plus the face box in source pixels and normalised.
EMOTION_KEYS = {"dominant_emotion", "face_detected", "confidence", "emotions", "box", "box_norm"}
EXAM_EVENTS = (
    "video_emotion_result",
    "rtsp_video_analysis",
    "student.emotion",
    "heart_rate_result",
    "rtsp_heart_rate_analysis",
    "student.heart_rate",
)


def face_stream(sid: str, bpm: float, window_s: float = 6) -> dict:
    return {
        "id": sid,
        "url": f"synthetic://?fps=15&size=640x360&scene=face&bpm={bpm}",
        "analyzers": ["emotion", {"name": "heart_rate", "params": {"window_s": window_s}}],
    }


class Recorder:
    """A python-socketio client recording every exam-proctoring event per namespace."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.got: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for namespace in ("/", "/monitor"):
            for event in EXAM_EVENTS:
                self.client.on(event, self._recorder(namespace, event), namespace=namespace)

    def _recorder(self, namespace: str, event: str):
        async def record(data: dict) -> None:
            self.got[(namespace, event)].append(data)

        return record

    def streams(self, namespace: str, event: str) -> set[str]:
        return {d["stream_name"] for d in self.got[(namespace, event)]}


async def test_exam_proctoring_events_in_both_namespaces_and_rooms(server) -> None:
    srv = server({"streams": [face_stream("exam-2041-user-7", 70), face_stream("lobby", 105)]})
    everyone, lobby_only = Recorder(), Recorder()
    await everyone.client.connect(srv.url, namespaces=["/", "/monitor"], transports=["websocket"])
    # Rooms: by the join event, or by the connection's auth.
    assert await everyone.client.call("join", {"stream_name": "exam-2041-user-7"}, namespace="/")
    assert (await everyone.client.call("join", {"bad": 1}, namespace="/"))["success"] is False
    await lobby_only.client.connect(
        srv.url, namespaces=["/monitor"], auth={"stream_name": "lobby"}, transports=["polling"]
    )
    ws_events: list[dict] = []

    async def listen_ws() -> None:
        async with websockets.connect(srv.url.replace("http", "ws") + "/ws/events") as ws:
            async for message in ws:
                ws_events.append(json.loads(message))

    listener = asyncio.create_task(listen_ws())
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            rooms = everyone.got[("/", "student.heart_rate")]
            if (
                sum(1 for d in rooms if d["result"]["bpm"] is not None) >= 3
                and lobby_only.got[("/monitor", "student.heart_rate")]
            ):
                break
            await asyncio.sleep(0.5)
        async with httpx.AsyncClient(base_url=srv.url) as c:
            bound = await c.put("/api/sessions/lobby", json={"session_id": "S-99"})
            assert bound.status_code == 200 and bound.json()["source"] == "manual"
            n_before = len(everyone.got[("/", "video_emotion_result")])
            await asyncio.sleep(1.5)
            stored = (await c.get("/api/analyses", params={"stream": "lobby", "limit": 5})).json()
            status = (await c.get("/api/rtsp/status")).json()
    finally:
        listener.cancel()
        await everyone.client.disconnect()
        await lobby_only.client.disconnect()

    both = {"exam-2041-user-7", "lobby"}
    for namespace in ("/", "/monitor"):
        for event in EXAM_EVENTS:
            if not event.startswith("student."):
                assert everyone.streams(namespace, event) == both, (namespace, event)
    # Room events reach only the room's members.
    assert everyone.streams("/", "student.emotion") == {"exam-2041-user-7"}
    assert everyone.streams("/monitor", "student.emotion") == set()  # joined in / only
    assert lobby_only.streams("/monitor", "student.heart_rate") == {"lobby"}
    assert lobby_only.streams("/monitor", "student.emotion") == {"lobby"}
    assert not lobby_only.got[("/", "video_emotion_result")]  # not connected to /

    emotion = everyone.got[("/monitor", "video_emotion_result")][0]
    assert set(emotion) == PAYLOAD_KEYS and set(emotion["result"]) == EMOTION_KEYS
    assert emotion["result"]["face_detected"] and emotion["result"]["dominant_emotion"] == "happy"
    assert abs(emotion["video_timestamp"] - time.time()) < 60
    sessions = {d["stream_name"]: d["session_id"] for d in everyone.got[("/", "heart_rate_result")]}
    assert sessions["exam-2041-user-7"] == "2041:7"  # automatic mapping from the name
    later = everyone.got[("/", "video_emotion_result")][n_before:]
    assert {d["session_id"] for d in later if d["stream_name"] == "lobby"} == {"S-99"}
    readings = [d["result"] for d in everyone.got[("/", "student.heart_rate")]]
    bpms = [r["bpm"] for r in readings if r["bpm"] is not None]
    assert bpms and all(abs(b - 70) <= 3 for b in bpms), bpms
    assert all(r["reason"] == "not enough signal yet" for r in readings if r["bpm"] is None)
    lobby_bpm = [d["result"]["bpm"] for d in lobby_only.got[("/monitor", "student.heart_rate")]]
    assert all(abs(b - 105) <= 3 for b in lobby_bpm if b is not None), lobby_bpm

    # The same results on /ws/events and in SQLite.
    analysis = [e for e in ws_events if e["type"] == "analysis"]
    assert {(e["stream"], e["analyzer"]) for e in analysis} == {
        (s, a) for s in both for a in ("emotion", "heart_rate")
    }
    assert stored and all(row["stream"] == "lobby" for row in stored)
    assert {row["analyzer"] for row in stored} <= {"emotion", "heart_rate"}
    assert stored[0]["session_id"] == "S-99" and stored[0]["result"]
    per_stream = status["streams"]["exam-2041-user-7"]["analyzers"]
    assert per_stream["emotion"]["results"] > 0 and per_stream["emotion"]["errors"] == 0
    assert per_stream["heart_rate"]["latency_p99_s"] is not None


def test_many_streams_no_cross_talk(server) -> None:
    """8 streams, each with its own heart rate, emotion + heart rate on all at once: every
    stream gets results, and each stream's heart rate is its own."""
    rates = {f"exam-1-user-{i}": 60 + 9 * i for i in range(8)}
    srv = server({"streams": [face_stream(sid, bpm, window_s=8) for sid, bpm in rates.items()]})
    with srv.client() as c:

        def readings() -> dict[str, list[float]]:
            out: dict[str, list[float]] = {}
            for sid in rates:
                rows = c.get(
                    "/api/analyses", params={"stream": sid, "analyzer": "heart_rate", "limit": 3}
                ).json()
                out[sid] = [r["result"]["bpm"] for r in rows if r["result"]["bpm"] is not None]
            return out

        def settled() -> dict[str, list[float]] | None:
            now = readings()
            return now if all(len(v) >= 2 for v in now.values()) else None

        got = wait_until(settled, 60, what="2 heart-rate readings on every stream")
        for sid, bpm in rates.items():
            assert all(abs(b - bpm) <= 3 for b in got[sid]), (sid, bpm, got[sid])
            emotions = c.get(
                "/api/analyses", params={"stream": sid, "analyzer": "emotion", "limit": 20}
            ).json()
            assert emotions and all(r["stream"] == sid for r in emotions)
            assert all(r["result"]["dominant_emotion"] == "happy" for r in emotions)
            stats = c.get(f"/api/streams/{sid}").json()["analyzers"]
            assert stats["emotion"]["errors"] == 0 and stats["heart_rate"]["errors"] == 0
