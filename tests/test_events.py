"""Incidents: the lifecycle rules directly, the SQLite store, and a real server end to end
(motion from a synthetic camera, a camera that goes away and comes back, search, ack,
snapshot, /ws/events)."""

from __future__ import annotations

import asyncio
import io
import json
import os
from fractions import Fraction

import av
import cv2
import numpy as np
import websockets

from vlm_monitor.events.clips import PacketRing, _Format, _Packet
from vlm_monitor.events.model import EventTracker
from vlm_monitor.events.snapshot import SnapshotFiles
from vlm_monitor.events.store import EventStore, fts_query
from vlm_monitor.testing import wait_until

# The test camera's ball never stops: reported every 3 s, each report opens a motion event
# that closes idle (idle_close_s 1) before the next.
MOTION = {"name": "motion", "fps": 5, "params": {"report_every_s": 3}}


def motion(stream: str, moving: bool, seq: int = 1) -> dict:
    result = {"level": 0.2, "moving": moving, "boxes_norm": [[0.1, 0.1, 0.2, 0.2]]}
    return {
        "stream": stream,
        "analyzer": "motion",
        "frame_seq": seq,
        "video_timestamp": 1000.0 + seq,
        "result": result,
    }


def test_motion_opens_updates_and_closes_one_incident() -> None:
    t = EventTracker()
    [opened] = t.analysis(motion("cam", True, 1), now=10)
    [updated] = t.analysis(motion("cam", True, 2), now=11)
    [closed] = t.analysis(motion("cam", False, 3), now=12)
    assert (opened.action, updated.action, closed.action) == ("open", "update", "close")
    assert opened.incident.id == updated.incident.id == closed.incident.id
    doc = closed.incident.to_json()
    assert doc["state"] == "closed" and doc["ended_at"] == 12 and doc["started_at"] == 10
    assert doc["result_ids"] == ["analysis:motion:1", "analysis:motion:2"]
    assert doc["frame_ts"] == 1001.0  # the frame that opened it, not a later one
    assert t.analysis(motion("cam", False, 4), now=13) == []


def test_vlm_text_lands_on_the_open_incident() -> None:
    t = EventTracker()
    [opened] = t.analysis(motion("cam", True), now=1)
    clip = {"stream": "cam", "id": 7, "result": "A man climbs the fence.", "error": None}
    [update] = t.clip(clip, now=2)
    assert update.incident.id == opened.incident.id
    assert update.incident.summary == "A man climbs the fence."
    assert "climbs" in update.incident.text and "result:7" in update.incident.result_ids
    assert t.clip({**clip, "stream": "other"}) == []
    assert t.clip({**clip, "error": "timeout"}) == []


def test_structured_vlm_alert_then_its_end() -> None:
    t = EventTracker()
    structured = {"alert": True, "severity": "critical", "title": "Fall", "summary": "fell"}
    clip = {"stream": "cam", "id": 1, "result": "{...}", "structured": structured,
            "video_info": {"start_timestamp": 0.5, "end_timestamp": 0.9}}  # fmt: skip
    [opened] = t.clip(clip, now=1)
    assert opened.action == "open" and opened.incident.kind == "alert"
    assert opened.incident.frame_ts == 0.9  # the clip's last frame the model saw
    assert opened.incident.severity == "critical" and opened.incident.title == "Fall"
    [again] = t.clip({**clip, "id": 2}, now=2)
    assert again.action == "update" and again.incident.id == opened.incident.id
    [closed] = t.clip({**clip, "id": 3, "structured": {"alert": False}}, now=3)
    assert closed.action == "close" and closed.incident.id == opened.incident.id


def test_flow_alerts_group_by_key_and_expire_when_quiet() -> None:
    t = EventTracker(idle_close_s=60)
    doc = {"flow": "f", "key": "k", "stream": "cam", "severity": "bogus", "message": "hot", "id": 1}
    [a] = t.flow_alert(doc, now=0)
    assert a.incident.to_json()["frame_ts"] is None  # nothing named the frame
    [b] = t.flow_alert({**doc, "id": 2}, now=30)
    assert a.incident.id == b.incident.id and a.incident.severity == "warning"
    assert t.expire(now=80) == []
    [gone] = t.expire(now=91)
    assert gone.action == "close" and gone.incident.ended_at == 91


def test_attention_incidents_from_results_with_an_incident_field() -> None:
    t = EventTracker()
    doc = {"stream": "s", "analyzer": "attention", "frame_seq": 1, "result": {"incident": "absent"}}
    [opened] = t.analysis(doc, now=1)
    assert opened.incident.kind == "absent" and opened.incident.severity == "warning"
    both = {**doc, "result": {"incident": ["multiple_faces"]}}
    changes = t.analysis(both, now=2)
    assert {(c.action, c.incident.kind) for c in changes} == {
        ("open", "multiple_faces"),
        ("close", "absent"),
    }


def test_stream_offline_then_online() -> None:
    t = EventTracker()
    assert t.stream_state("cam", "connecting", now=0) == []
    assert t.stream_state("cam", "live", now=1) == []
    [down] = t.stream_state("cam", "reconnecting", now=2)
    assert down.action == "open" and down.incident.kind == "stream_offline"
    assert t.expire(now=10_000) == []  # offline stays open however long
    [up, online] = t.stream_state("cam", "live", now=20)
    assert up.action == "close" and up.incident.id == down.incident.id
    assert online.incident.kind == "stream_online" and online.incident.state == "closed"


def test_packet_ring_keeps_whole_groups_of_pictures() -> None:
    ring = PacketRing(keep_s=2.0)
    fmt = _Format("h264", 320, 240, Fraction(1, 90000))
    ring.put(fmt, _Packet(b"p", 0, 0, False, 0.0))  # no keyframe yet: nothing to start from
    assert ring.since(0)[1] == []
    for i in range(100):  # 10 packets a second, a keyframe every second
        ring.put(fmt, _Packet(b"x", i, i, i % 10 == 0, i / 10))
    _, kept = ring.since(0)
    assert kept[0].key and 1.9 <= 9.9 - kept[0].at <= 3.0
    _, tail = ring.since(9.5)
    assert tail[0].key and tail[0].at == 9.0 and len(tail) == 10
    ring.put(_Format("hevc", 320, 240, fmt.time_base), _Packet(b"k", 0, 0, True, 10.0))
    assert len(ring.since(0)[1]) == 1  # a new format starts afresh


def test_store_search_filters_and_retention(tmp_path) -> None:
    store = EventStore(tmp_path / "db.sqlite")
    t = EventTracker()
    docs = []
    for i, text in enumerate(["A delivery van parks", "Someone climbs the fence", "Quiet"]):
        [c] = t.analysis(motion(f"cam{i}", True), now=100 + i)
        c.incident.text = text
        docs.append(c.incident.to_json())
        store.save(docs[-1])
    assert [d["id"] for d in store.query()] == [d["id"] for d in reversed(docs)]
    assert [d["text"] for d in store.query(q="fence")] == ["Someone climbs the fence"]
    assert [d["text"] for d in store.query(q="deliv")] == ["A delivery van parks"]  # prefix
    assert store.query(q='"NEAR( col:x') == []  # never an SQL error
    assert fts_query("*** ''") is None and store.query(q="***") == []
    assert len(store.query(stream="cam1")) == 1 and store.query(kind="alert") == []
    assert len(store.query(since=101.5)) == 1
    docs[0]["summary"] = "updated in place"
    store.save(docs[0])
    assert len(store.query()) == 3 and store.get(docs[0]["id"])["summary"] == "updated in place"
    store.save({**docs[1], "acknowledged": True})
    counts = store.counts()
    assert counts["cam0"] == {"unacknowledged": 1, "open": 1, "total": 1}
    assert counts["cam1"]["unacknowledged"] == 0 and set(counts) == {"cam0", "cam1", "cam2"}
    old = {k: v for k, v in docs[2].items() if k not in ("frame_ts", "evidence_error")}
    store.save(old)  # a row written before these fields existed reads with them empty
    assert store.get(old["id"])["frame_ts"] is None and "evidence_error" in store.query()[0]
    [closed] = t.analysis(motion("cam2", False), now=103)
    store.save(closed.incident.to_json())
    assert [d["stream"] for d in store.query(state="open")] == ["cam1", "cam0"]
    assert [d["stream"] for d in store.query(state="closed")] == ["cam2"]
    assert store.prune(older_than=0, keep=2) == [docs[0]["id"]]
    assert store.query(q="delivery") == []
    store.close()


def test_evidence_size_cap_deletes_the_oldest_and_the_events_forget_it(tmp_path) -> None:
    files, store = SnapshotFiles(tmp_path / "events"), EventStore(tmp_path / "db.sqlite")
    t = EventTracker()
    ids = []
    for i in range(3):
        [c] = t.analysis(motion(f"cam{i}", True), now=i)
        c.incident.has_snapshot = c.incident.has_clip = True
        store.save(c.incident.to_json())
        ids.append(c.incident.id)
        files.write(c.incident.id, b"j" * 100_000)
        files.clip_path(c.incident.id).write_bytes(b"m" * 300_000)
        for path in (files.path(c.incident.id), files.clip_path(c.incident.id)):
            os.utime(path, (1000 + i, 1000 + i))  # oldest first, whatever the clock did
    # 1.2 MB in all, 0.9 MB allowed: the oldest event's snapshot and clip go, nothing else.
    gone = files.enforce_cap(0.9)
    assert gone == {ids[0]: {".jpg", ".mp4"}}
    store.drop_evidence(gone)
    first, second = store.get(ids[0]), store.get(ids[1])
    assert first["snapshot_url"] is None and first["clip_url"] is None
    assert second["snapshot_url"] and second["clip_url"] and files.read(ids[1])
    assert files.enforce_cap(0.9) == {}
    store.close()


def test_short_disk_keeps_events_without_evidence_and_says_why(server, camera) -> None:
    cam = camera(fps=10, size="320x240")
    # More free space asked for than any disk has: every snapshot and clip is refused.
    streams = [{"id": sid, "url": cam.url, "analyzers": [MOTION]} for sid in ("a", "b")]
    events = {"idle_close_s": 1, "min_free_mb": 1e12}
    srv = server({"events": events, "streams": streams})
    with srv.client() as c:

        def refused() -> int:
            text = c.get("/metrics").text
            line = next(x for x in text.splitlines() if x.startswith("vlm_event_evidence_refused_"))
            return int(float(line.split()[-1]))

        # Both streams' motion: two events refused in one burst of a short disk.
        opened = wait_until(
            lambda: (
                (e := c.get("/api/events", params={"kind": "motion"}).json())
                and {x["stream"] for x in e} == {"a", "b"}
                and e
            ),
            40,
            what="motion on both streams",
        )
        assert refused() >= 2
        status = c.get("/api/status").json()["events"]
        assert status["evidence_paused"].startswith("disk short: ")
        for event in opened:
            assert event["snapshot_url"] is None and event["clip_url"] is None
            assert event["evidence_error"].startswith("disk short: only ")
            assert "MB needed" in event["evidence_error"]
            assert c.get(f"/api/events/{event['id']}/snapshot.jpg").status_code == 404
    assert srv.output().count("event evidence refused") == 1  # once a burst, not once an event


def test_evidence_over_the_size_cap_goes_and_the_event_stays(server, camera) -> None:
    cam = camera(fps=10, size="320x240")
    # 1 kB for all evidence: any snapshot or clip is over it once the clip is written.
    events = {"idle_close_s": 1, "preroll_s": 1, "postroll_s": 1, "max_evidence_mb": 0.001}
    stream = {"id": "cam", "url": cam.url, "analyzers": [MOTION]}
    srv = server({"events": events, "streams": [stream]})
    with srv.client() as c:

        def pruned_event() -> dict | None:
            for e in c.get("/api/events", params={"kind": "motion"}).json():
                if e["state"] == "closed" and e["snapshot_url"] is None and not e["clip_url"]:
                    return e
            return None

        event = wait_until(pruned_event, 40, what="an event without its pruned evidence")
        assert event["evidence_error"] is None  # pruned, not refused
        assert c.get(f"/api/events/{event['id']}/snapshot.jpg").status_code == 404
        metrics = c.get("/metrics").text
        line = next(x for x in metrics.splitlines() if x.startswith("vlm_event_evidence_pruned_"))
        assert float(line.split()[-1]) >= 2  # the snapshot and the clip


def test_events_end_to_end(server, camera) -> None:
    cam = camera(fps=10, size="320x240")
    srv = server(
        {
            "events": {"idle_close_s": 1, "preroll_s": 2, "postroll_s": 1},
            "streams": [
                {"id": "cam", "url": cam.url, "analyzers": [MOTION]},
            ],
        }
    )
    seen: list[dict] = []

    async def watch(until) -> None:
        async with websockets.connect(srv.url.replace("http", "ws") + "/ws/events") as ws:
            while not until():
                ev = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if ev["type"] == "event":
                    seen.append(ev)

    def motion_closed() -> bool:
        return any(e["event"]["kind"] == "motion" and e["action"] == "close" for e in seen)

    asyncio.run(watch(motion_closed))  # the ball moves: motion opens, then a quiet close
    opened = next(e for e in seen if e["action"] == "open")
    event_id = opened["event"]["id"]
    assert opened["stream"] == "cam" and opened["event"]["state"] == "open"
    # The triggering frame's decode time, a little before the tracker opened the event.
    frame_ts, started = opened["event"]["frame_ts"], opened["event"]["started_at"]
    assert 0 <= started - frame_ts < 10, (frame_ts, started)
    with srv.client() as c:
        got = c.get(f"/api/events/{event_id}").json()
        assert got["kind"] == "motion" and got["result_ids"]
        snap = c.get(got["snapshot_url"])
        assert snap.status_code == 200 and snap.headers["content-type"] == "image/jpeg"
        picture = cv2.imdecode(np.frombuffer(snap.content, np.uint8), cv2.IMREAD_COLOR)
        assert picture.shape[:2] == (240, 320)
        # The motion boxes are drawn in red.
        red = (picture[:, :, 2] > 200) & (picture[:, :, 1] < 60) & (picture[:, :, 0] < 60)
        assert red.sum() > 20
        listed = c.get("/api/events", params={"stream": "cam", "kind": "motion"}).json()
        assert event_id in [e["id"] for e in listed]
        assert c.get("/api/events", params={"q": "motion level"}).json()
        assert c.get("/api/events", params={"q": "nothingmatches"}).json() == []
        assert c.get("/api/events", params={"kind": "nope"}).status_code == 422
        assert c.get("/api/events/ffff").status_code == 404
        assert c.get("/api/events/bad..id").status_code == 422
        # The clip: the camera's own H.264 packets, remuxed, from before the event opened.
        got = wait_until(
            lambda: (d := c.get(f"/api/events/{event_id}").json())["clip_url"] and d, 20
        )
        clip = c.get(got["clip_url"])
        assert clip.status_code == 200 and clip.headers["content-type"] == "video/mp4"
        with av.open(io.BytesIO(clip.content)) as mp4:
            video = mp4.streams.video[0]
            assert video.codec_context.name == "h264"
            assert sum(1 for _ in mp4.decode(video)) >= 10  # 1 s at 10 fps, and pre-roll
        unacked = c.get("/api/events/counts").json()["cam"]["unacknowledged"]
        acked = c.post(f"/api/events/{event_id}/ack").json()
        assert acked["acknowledged"] is True
        # Other motion events may open meanwhile: this one left the count, whatever came.
        assert c.get("/api/events/counts").json()["cam"]["unacknowledged"] <= unacked
        assert c.get(f"/api/events/{event_id}").json()["acknowledged"] is True

    # The camera goes away: stream_offline opens; back on the same port, it closes.
    port = cam.port
    cam.stop()
    with srv.client() as c:
        offline = wait_until(
            lambda: c.get("/api/events", params={"kind": "stream_offline"}).json(),
            30,
            what="stream_offline",
        )
        assert offline[0]["state"] == "open" and offline[0]["severity"] == "warning"
        camera(fps=10, size="320x240", port=port)
        wait_until(
            lambda: c.get("/api/events", params={"kind": "stream_online"}).json(),
            60,
            what="stream_online",
        )
        closed = c.get(f"/api/events/{offline[0]['id']}").json()
        assert closed["state"] == "closed" and closed["ended_at"] >= closed["started_at"]
