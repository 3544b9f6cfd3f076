"""WHIP ingest: an aiortc client and Chromium publish to the server over WebRTC on loopback;
the published stream behaves like any camera."""

from __future__ import annotations

import asyncio
import fractions
import time

import aioice.ice
import httpx
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from av import VideoFrame

from vlm_monitor.camera import strip
from vlm_monitor.camera.scene import SyntheticScene
from vlm_monitor.testing import CHROMIUM_MEDIA_FLAGS, chromium, wait_until

TOKEN = "publish-secret-1"


class SceneTrack(VideoStreamTrack):
    """640x360 frames of the synthetic scene (with the timestamp strip) at 15 fps."""

    def __init__(self) -> None:
        super().__init__()
        self.scene = SyntheticScene(640, 360)
        self.seq = 0

    async def recv(self) -> VideoFrame:
        await asyncio.sleep(1 / 15)
        self.seq += 1
        frame = VideoFrame.from_ndarray(self.scene.render(self.seq, time.time()), format="bgr24")
        frame.pts, frame.time_base = self.seq * 6000, fractions.Fraction(1, 90000)
        return frame


@pytest.fixture
def loopback_ice(monkeypatch):
    """The test's own aiortc client offers loopback candidates, like the server."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


def whip_config(**extra: object) -> dict:
    return {
        "streams": [
            {"id": "exam-1-user-2", "url": "whip://", "whip_token": TOKEN, "analyzers": ["motion"]},
            {"id": "cam", "url": "synthetic://?fps=5&size=320x180"},
        ],
        "webrtc": {"ice_addresses": ["127.0.0.1"], "publisher_timeout_s": 3, **extra},
    }


async def offer(pc: RTCPeerConnection) -> str:
    pc.addTrack(SceneTrack())
    await pc.setLocalDescription(await pc.createOffer())
    return pc.localDescription.sdp


async def publish(
    url: str, stream: str, token: str | None = TOKEN
) -> tuple[RTCPeerConnection, httpx.Response]:
    pc = RTCPeerConnection()
    sdp = await offer(pc)
    headers = {"Content-Type": "application/sdp"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient(base_url=url, timeout=20) as c:
        resp = await c.post(f"/whip/{stream}", content=sdp, headers=headers)
    if resp.status_code == 201:
        await pc.setRemoteDescription(RTCSessionDescription(resp.text, "answer"))
    return pc, resp


def test_publish_goes_live_runs_analyzers_and_delete_stops(server, loopback_ice) -> None:
    srv = server(whip_config())

    async def run() -> None:
        pc, resp = await publish(srv.url, "exam-1-user-2")
        assert resp.status_code == 201, resp.text
        assert resp.headers["content-type"].startswith("application/sdp")
        location = resp.headers["location"]
        assert location.startswith("/whip/exam-1-user-2/")
        async with httpx.AsyncClient(base_url=srv.url, timeout=10) as c:

            async def live() -> dict:
                for _ in range(150):
                    status = (await c.get("/api/streams/exam-1-user-2")).json()
                    if status["state"] == "live" and status["analyzers"]["motion"]["frames"] >= 5:
                        return status
                    await asyncio.sleep(0.2)
                raise AssertionError(f"not live: {status}")

            status = await live()
            assert status["transport"] == "webrtc" and status["width"] == 640
            assert status["publisher"]["frames"] > 0
            assert status["session"]["session_id"] == "1:2"  # the exam-proctoring mapping by name
            # A hub subscriber gets the published pictures: the strip survives VP8.
            jpeg = await c.get("/internal/video/latest-frame", params={"stream": "exam-1-user-2"})
            assert jpeg.status_code == 200
            import cv2

            image = cv2.imdecode(np.frombuffer(jpeg.content, np.uint8), cv2.IMREAD_COLOR)
            seq, ts = strip.read(image)
            assert seq > 0 and abs(time.time() - ts) < 10
            # The token protects DELETE too.
            assert (await c.delete(location)).status_code == 401
            done = await c.delete(location, headers={"Authorization": f"Bearer {TOKEN}"})
            assert done.status_code == 200
            for _ in range(50):
                status = (await c.get("/api/streams/exam-1-user-2")).json()
                if status["state"] == "stopped":
                    break
                await asyncio.sleep(0.1)
            assert status["state"] == "stopped" and status["last_error"] == "publisher ended"
            assert "publisher" not in status
            assert (
                await c.delete(location, headers={"Authorization": f"Bearer {TOKEN}"})
            ).status_code == 404
        await pc.close()

    asyncio.run(run())


def test_bad_publishes_get_4xx_with_a_message(server, loopback_ice) -> None:
    srv = server(whip_config())

    async def run() -> None:
        async with httpx.AsyncClient(base_url=srv.url, timeout=20) as c:
            sdp_headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {TOKEN}"}
            r = await c.post("/whip/exam-1-user-2", content="hello", headers=sdp_headers)
            assert r.status_code == 400 and "SDP offer" in r.json()["error"]
            r = await c.post(
                "/whip/exam-1-user-2", content="v=0\r\nm=video 9 nonsense\r\n", headers=sdp_headers
            )
            assert r.status_code == 400, r.text
            r = await c.post("/whip/exam-1-user-2", json={"sdp": "x"})
            assert r.status_code == 415
            r = await c.post("/whip/exam-1-user-2", content="x" * 70000, headers=sdp_headers)
            assert r.status_code == 413
            r = await c.post("/whip/cam", content="v=0", headers=sdp_headers)
            assert r.status_code == 409 and "not whip://" in r.json()["error"]
        pc, resp = await publish(srv.url, "nobody-here")
        assert resp.status_code == 404 and "auto_create" in resp.json()["error"]
        await pc.close()
        for token in (None, "wrong-token-123"):
            pc, resp = await publish(srv.url, "exam-1-user-2", token)
            assert resp.status_code == 401 and resp.headers["www-authenticate"].startswith("Bearer")
            await pc.close()
        # One publisher per stream, like a camera's single connection.
        first, ok = await publish(srv.url, "exam-1-user-2")
        assert ok.status_code == 201
        second, busy = await publish(srv.url, "exam-1-user-2")
        assert busy.status_code == 409
        await second.close()
        await first.close()

    asyncio.run(run())


def test_a_vanished_publisher_is_cleaned_up(server, loopback_ice) -> None:
    srv = server(whip_config(auto_create=True, publish_token=TOKEN, auto_analyzers=["motion"]))

    async def run() -> None:
        pc, resp = await publish(srv.url, "walkaway")  # auto-created on publish
        assert resp.status_code == 201, resp.text
        async with httpx.AsyncClient(base_url=srv.url, timeout=10) as c:
            for _ in range(100):
                status = (await c.get("/api/streams/walkaway")).json()
                if status["state"] == "live":
                    break
                await asyncio.sleep(0.1)
            assert status["state"] == "live" and "motion" in status["analyzers"]
            # The publisher disappears: its media stops, no DELETE.
            for sender in pc.getSenders():
                await sender.stop()
            t0 = time.monotonic()
            for _ in range(150):
                status = (await c.get("/api/streams/walkaway")).json()
                if "publisher" not in status:
                    break
                await asyncio.sleep(0.1)
            assert "publisher" not in status, status
            assert time.monotonic() - t0 < 8  # publisher_timeout_s 3 plus checks
            config = (await c.get("/api/config")).json()
            assert config["webrtc"]["publish_token"] == "***"
        await pc.close()

    asyncio.run(run())


@pytest.mark.browser
def test_chromium_publishes_from_the_publish_page(server, tmp_path) -> None:
    srv = server(
        {
            "streams": [{"id": "exam-7-user-8", "url": "whip://"}],
            "webrtc": {"publisher_timeout_s": 5},
        }
    )
    with chromium(*CHROMIUM_MEDIA_FLAGS) as browser:
        page = browser.new_page()
        page.goto(srv.url + "/publish")
        page.click("#camera")
        page.wait_for_function("() => !document.getElementById('publish').disabled", timeout=10000)
        page.fill("#stream", "exam-7-user-8")
        page.click("#publish")
        with srv.client() as c:
            status = wait_until(
                lambda: (
                    (s := c.get("/api/streams/exam-7-user-8").json())["state"] == "live"
                    and s["frames_in"] > 10
                    and s
                ),
                30,
                what="the browser's stream live",
            )
            assert status["transport"] == "webrtc" and status["publisher"]["frames"] > 10
            page.screenshot(path=str(tmp_path / "publish.png"))
            page.click("#stop")
            wait_until(lambda: c.get("/api/streams/exam-7-user-8").json()["state"] == "stopped", 10)


def test_webrtc_view_shares_one_encoder_between_viewers(server, loopback_ice) -> None:
    srv = server(
        {
            "streams": [{"id": "cam", "url": "synthetic://?fps=15&size=640x360"}],
            "webrtc": {"ice_addresses": ["127.0.0.1"]},
        }
    )

    readers: set[asyncio.Task] = set()

    async def viewer(results: list) -> tuple[RTCPeerConnection, str]:
        pc = RTCPeerConnection()
        pc.addTransceiver("video", direction="recvonly")
        got = asyncio.get_running_loop().create_future()

        @pc.on("track")
        def on_track(track) -> None:
            async def read() -> None:
                while True:
                    frame = await track.recv()
                    seq, ts = strip.read(frame.to_ndarray(format="bgr24"))
                    results.append((seq, time.time() - ts))
                    if len(results) >= 20 and not got.done():
                        got.set_result(True)

            readers.add(asyncio.ensure_future(read()))

        await pc.setLocalDescription(await pc.createOffer())
        async with httpx.AsyncClient(base_url=srv.url, timeout=20) as c:
            r = await c.post(
                "/whep/cam",
                content=pc.localDescription.sdp,
                headers={"Content-Type": "application/sdp"},
            )
        assert r.status_code == 201, r.text
        await pc.setRemoteDescription(RTCSessionDescription(r.text, "answer"))
        await asyncio.wait_for(got, 20)
        return pc, r.headers["location"]

    async def run() -> None:
        first, second = [], []
        (pc1, loc1), (pc2, loc2) = await asyncio.gather(viewer(first), viewer(second))
        for results in (first, second):
            seqs = [s for s, _ in results]
            assert seqs == sorted(seqs) and len(set(seqs)) > 15  # live, in order
            assert sorted(lat for _, lat in results)[len(results) // 2] < 0.5  # glass-to-glass
        async with httpx.AsyncClient(base_url=srv.url, timeout=10) as c:
            t0 = time.monotonic()
            before = (await c.get("/api/streams/cam")).json()["webrtc_view"]
            await asyncio.sleep(2)
            after = (await c.get("/api/streams/cam")).json()["webrtc_view"]
            rate = (after["frames_encoded"] - before["frames_encoded"]) / (time.monotonic() - t0)
            assert after["viewers"] == 2
            assert rate < 20, f"{rate:.1f} frames/s encoded for 2 viewers of a 15 fps stream"
            assert (await c.delete(loc1)).status_code == 200
            assert (await c.get("/api/streams/cam")).json()["webrtc_view"]["viewers"] == 1
            assert (await c.delete(loc2)).status_code == 200
            assert "webrtc_view" not in (await c.get("/api/streams/cam")).json()  # encoder gone
            bad = await c.post(
                "/whep/nope", content="v=0", headers={"Content-Type": "application/sdp"}
            )
            assert bad.status_code == 404
        for task in readers:
            task.cancel()
        await pc1.close()
        await pc2.close()

    asyncio.run(run())


def test_published_audio_and_video_feed_a_realtime_session(
    server, loopback_ice, speech_wav, monkeypatch
) -> None:
    """A WHIP publisher's microphone and camera are the input of a /ws/video session
    (``?source=``): the VAD hears the published speech and the model gets its frames."""
    import json

    import websockets
    from aiortc.contrib.media import MediaPlayer

    from fake_realtime import DELTAS, FakeRealtime

    monkeypatch.setenv("FAKE_RT_KEY", "sk-test")
    fake = FakeRealtime()
    try:
        config = whip_config()
        config["realtime"] = {
            "providers": [
                {"kind": "dashscope", "url": fake.url("dashscope"), "api_key_env": "FAKE_RT_KEY"}
            ]
        }
        srv = server(config)

        async def run() -> list[dict]:
            events: list[dict] = []
            ws_url = srv.url.replace("http", "ws") + "/ws/video"
            async with websockets.connect(ws_url + "?source=nope") as bad:
                refused = json.loads(await bad.recv())
                assert refused["type"] == "error" and refused["code"] == "bad_source"
            async with websockets.connect(ws_url + "?source=exam-1-user-2") as ws:
                assert json.loads(await ws.recv())["type"] == "ready"
                pc = RTCPeerConnection()
                player = MediaPlayer(str(speech_wav))
                pc.addTrack(player.audio)
                pc.addTrack(SceneTrack())
                await pc.setLocalDescription(await pc.createOffer())
                async with httpx.AsyncClient(base_url=srv.url, timeout=20) as c:
                    r = await c.post(
                        "/whip/exam-1-user-2",
                        content=pc.localDescription.sdp,
                        headers={
                            "Content-Type": "application/sdp",
                            "Authorization": f"Bearer {TOKEN}",
                        },
                    )
                assert r.status_code == 201, r.text
                await pc.setRemoteDescription(RTCSessionDescription(r.text, "answer"))
                async with asyncio.timeout(30):
                    while not (events and events[-1].get("type") == "response.done"):
                        events.append(json.loads(await ws.recv()))
                await pc.close()
            return events

        events = asyncio.run(run())
    finally:
        fake.close()
    kinds = [e["type"] for e in events]
    assert kinds.index("speech.started") < kinds.index("speech.stopped")
    assert "".join(e["text"] for e in events if e["type"] == "text.delta") == "".join(DELTAS)
    assert fake.of("input_image_buffer.append")  # the published picture
    assert fake.of("input_audio_buffer.commit")
