"""The HTTP/WebSocket API of a real backend process."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import websockets

from vlm_monitor.hub import wire
from vlm_monitor.testing import wait_until

SYN = "synthetic://?fps=15&size=640x360"


def live(client: httpx.Client, sid: str, timeout: float = 20) -> dict:
    return wait_until(
        lambda: (s := client.get(f"/api/streams/{sid}").json())["state"] == "live" and s,
        timeout,
        what=f"{sid} live",
    )


def test_health_status_and_crud(server) -> None:
    srv = server({"streams": [{"id": "cfg", "url": SYN}]})
    with srv.client() as c:
        assert c.get("/health").json() == {"status": "ok"}
        r = c.post("/api/streams", json={"id": "api1", "url": SYN})
        assert r.status_code == 201, r.text
        assert r.json()["id"] == "api1" and r.json()["state"] in ("connecting", "live")
        st = live(c, "api1")
        for key in (
            "id",
            "url",
            "state",
            "frames_in",
            "fps_in",
            "reconnects",
            "last_frame_age_s",
            "subscribers",
            "width",
            "height",
        ):
            assert key in st
        status = c.get("/api/status").json()
        assert status["version"] and status["uptime_s"] >= 0
        assert {s["id"] for s in status["streams"]} == {"cfg", "api1"}
        assert {s["id"] for s in c.get("/api/streams").json()} == {"cfg", "api1"}
        exported = c.get("/api/config").json()
        assert [s["id"] for s in exported["streams"]] == ["cfg", "api1"]
        assert c.delete("/api/streams/api1").json() == {"id": "api1", "deleted": True}
        assert c.get("/api/streams/api1").status_code == 404


def test_bad_input_gets_clear_4xx(server) -> None:
    srv = server({"streams": [{"id": "cam", "url": SYN}]})
    with srv.client() as c:
        for path in (
            "/api/streams/nope",
            "/api/streams/nope/frame.jpg",
            "/api/streams/nope/mjpeg",
            "/internal/video/latest-frame?stream=nope",
        ):
            r = c.get(path)
            assert r.status_code == 404 and "nope" in r.json()["error"], path
        assert c.delete("/api/streams/nope").status_code == 404
        r = c.post("/api/streams", json={"id": "x", "url": "htp://bad"})
        assert r.status_code == 422 and "unsupported scheme 'htp'" in r.json()["error"]
        r = c.post("/api/streams", json={"id": "x"})
        assert r.status_code == 422 and "url" in r.json()["error"]
        r = c.post(
            "/api/streams", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert r.status_code == 422 and r.json()["error"]
        r = c.post("/api/streams", json={"id": "has space", "url": SYN})
        assert r.status_code == 422 and "id" in r.json()["error"]
        r = c.post("/api/streams", json={"id": "cam", "url": SYN})
        assert r.status_code == 409 and "already exists" in r.json()["error"]
        r = c.post("/api/streams", json={"id": "x", "url": SYN, "clips": {"provider": "nope"}})
        assert r.status_code == 422 and "unknown provider(s) ['nope']" in r.json()["error"]
        r = c.post("/api/streams", json={"id": "x", "url": SYN, "clips": {"clip_seconds": -1}})
        assert r.status_code == 422 and "clips.clip_seconds" in r.json()["error"]
        r = c.post("/internal/video/subscribe", json={"stream": "cam", "frame_rate": -1})
        assert r.status_code == 422
        r = c.get("/internal/video/latest-frame", params={"stream": "cam", "timeout": 999})
        assert r.status_code == 422
        assert c.post("/api/rtsp/stop", json={"stream_name": "nope"}).status_code == 404
        # nothing already stored was lost
        assert c.get("/api/streams/cam").json()["state"] in ("connecting", "live")
        assert [s["id"] for s in c.get("/api/streams").json()] == ["cam"]


def test_api_streams_survive_restart(server, tmp_path) -> None:
    srv = server()
    with srv.client() as c:
        assert c.post("/api/streams", json={"id": "keep", "url": SYN}).status_code == 201
        assert c.post("/api/streams", json={"id": "gone", "url": SYN}).status_code == 201
        assert c.delete("/api/streams/gone").status_code == 200
    port = srv.port
    srv.stop()
    srv2 = server(port=port)
    with srv2.client() as c:
        assert [s["id"] for s in c.get("/api/streams").json()] == ["keep"]
        st = live(c, "keep")
        assert st["persistent"] is True and st["frames_in"] > 0


def test_concurrent_adds_and_removes_are_safe(server) -> None:
    srv = server()

    async def churn() -> list[int]:
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as c:
            adds = await asyncio.gather(
                *(c.post("/api/streams", json={"id": f"s{i % 5}", "url": SYN}) for i in range(20))
            )
            removes = await asyncio.gather(*(c.delete(f"/api/streams/s{i}") for i in range(3)))
            return [r.status_code for r in adds] + [r.status_code for r in removes]

    codes = asyncio.run(churn())
    assert codes[:20].count(201) == 5 and codes[:20].count(409) == 15
    assert codes[20:] == [200, 200, 200]
    with srv.client() as c:
        assert sorted(s["id"] for s in c.get("/api/streams").json()) == ["s3", "s4"]


def test_frame_jpeg_and_latest_frame_long_poll(server) -> None:
    srv = server({"streams": [{"id": "cam", "url": SYN}]})
    with srv.client() as c:
        live(c, "cam")
        r = c.get("/api/streams/cam/frame.jpg")
        assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
        r = c.get("/internal/video/latest-frame", params={"stream": "cam"})
        seq = int(r.headers["X-Frame-Seq"])
        assert abs(float(r.headers["X-Frame-Timestamp"]) - time.time()) < 5
        t0 = time.monotonic()
        r = c.get(
            "/internal/video/latest-frame", params={"stream": "cam", "after_seq": seq, "timeout": 5}
        )
        assert r.status_code == 200 and int(r.headers["X-Frame-Seq"]) > seq
        assert time.monotonic() - t0 < 2  # returned as soon as the next frame came
        r = c.get(
            "/internal/video/latest-frame",
            params={"stream": "cam", "after_seq": 10**9, "timeout": 0.3},
        )
        assert r.status_code == 204


def test_mjpeg_stream(server) -> None:
    srv = server({"streams": [{"id": "cam", "url": SYN}]})
    with srv.client() as c:
        live(c, "cam")
        with c.stream("GET", "/api/streams/cam/mjpeg") as r:
            assert r.headers["content-type"].startswith("multipart/x-mixed-replace")
            buf = b""
            for chunk in r.iter_bytes():
                buf += chunk
                if buf.count(b"\xff\xd9") >= 3:
                    break
        assert buf.count(b"--vlmframe") >= 3 and b"X-Frame-Seq:" in buf


def test_push_channel_and_subscription_status(server) -> None:
    srv = server({"streams": [{"id": "cam", "url": SYN}]})
    with srv.client() as c:
        live(c, "cam")
        sub = c.post(
            "/internal/video/subscribe", json={"stream": "cam", "name": "t", "frame_rate": 5}
        )
        assert sub.status_code == 201
        sub = sub.json()

    async def read_frames() -> list[wire.FrameMessage]:
        url = srv.url.replace("http", "ws") + sub["ws_path"]
        async with websockets.connect(url) as ws:
            return [wire.unpack(await ws.recv()) for _ in range(8)]

    t0 = time.monotonic()
    msgs = asyncio.run(read_frames())
    elapsed = time.monotonic() - t0
    assert all(m.jpeg[:2] == b"\xff\xd8" and m.stream == "cam" for m in msgs)
    assert [m.seq for m in msgs] == sorted({m.seq for m in msgs})
    assert elapsed > 1.0  # 8 frames at 5 fps take > 1.4 s: the rate limit holds
    with srv.client() as c:
        status = c.get("/internal/video/status").json()
        assert status["streams"]["cam"]["state"] == "live"
        (s,) = [
            s for s in status["subscriptions"] if s["subscription_id"] == sub["subscription_id"]
        ]
        assert s["delivered"] >= 8


def test_ws_events_report_stream_state(server) -> None:
    srv = server()

    async def run() -> list[dict]:
        async with websockets.connect(srv.url.replace("http", "ws") + "/ws/events") as ws:
            async with httpx.AsyncClient(base_url=srv.url) as c:
                assert (
                    await c.post("/api/streams", json={"id": "ev", "url": SYN})
                ).status_code == 201
            hello = json.loads(await asyncio.wait_for(ws.recv(), 20))
            assert hello["type"] == "hello" and hello["streams"] == []
            seen: list[dict] = []
            while not any(e.get("state") == "live" for e in seen):
                seen.append(json.loads(await asyncio.wait_for(ws.recv(), 20)))
            return seen

    events = asyncio.run(run())
    assert all(e["type"] == "stream.state" and e["stream"] == "ev" and "ts" in e for e in events)
    assert [e["state"] for e in events][:2] == ["connecting", "live"]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_rtsp_aliases(server) -> None:
    srv = server()
    with srv.client() as c:
        body = {"stream_name": "exam-0001-user-0042", "rtsp_url": SYN}
        r = c.post("/api/rtsp/start", json=body)
        assert r.status_code == 200 and r.json()["success"] is True
        assert c.post("/api/rtsp/start", json=body).json()["already_running"] is True
        other = {**body, "rtsp_url": "rtsp://127.0.0.1:1/x"}
        assert c.post("/api/rtsp/start", json=other).status_code == 409
        live(c, "exam-0001-user-0042")
        status = c.get("/api/rtsp/status").json()
        assert status["active_streams"] == 1 and "exam-0001-user-0042" in status["streams"]
        assert (
            c.post("/api/rtsp/stop", json={"stream_name": "exam-0001-user-0042"}).status_code == 200
        )
        assert c.get("/api/rtsp/status").json()["streams"] == {}


def test_metrics(server) -> None:
    srv = server({"streams": [{"id": "cam", "url": SYN}]})
    with srv.client() as c:
        live(c, "cam")
        text = c.get("/metrics").text
    assert 'vlm_stream_frames_total{stream="cam"}' in text
    assert 'vlm_stream_live{stream="cam"} 1.0' in text


@pytest.mark.parametrize("config", ["streams: [\n", "server: {port: nope}\n"])
def test_serve_refuses_bad_config(tmp_path, python, config: str) -> None:
    import subprocess

    path = tmp_path / "bad.yaml"
    path.write_text(config)
    r = subprocess.run(
        [python, "-m", "vlm_monitor", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "vlm-monitor:" in r.stderr and ("YAML" in r.stderr or "server.port" in r.stderr)
