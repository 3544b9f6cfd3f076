"""``/ws/video``: validation, server VAD on real (espeak-ng) speech, and both providers'
wire protocols against a local fake that asserts on what we send."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json

import cv2
import numpy as np
import pytest
import websockets

from fake_realtime import DELTAS, TRANSCRIPT, FakeRealtime
from vlm_monitor.realtime.protocol import model_jpeg
from vlm_monitor.realtime.vad import Vad
from vlm_monitor.testing import CHROMIUM_MEDIA_FLAGS, chromium, wait_until
from vlm_monitor.types import Frame


def silence(seconds: float) -> bytes:
    return bytes(int(seconds * 16000) * 2)


def jpeg(width: int = 1280, height: int = 960) -> str:
    img = np.full((height, width, 3), 90, np.uint8)
    cv2.circle(img, (width // 2, height // 2), height // 4, (0, 200, 255), -1)
    return base64.b64encode(cv2.imencode(".jpg", img)[1].tobytes()).decode()


def test_vad_fires_on_speech_and_not_on_silence_or_noise(speech) -> None:
    vad = Vad()
    audio = silence(1) + speech + silence(1.5)
    events = []
    for i in range(0, len(audio), 3200):
        events += vad.feed(audio[i : i + 3200])
    assert [e.kind for e in events] == ["speech.started", "speech.stopped"]
    onset = 1.0
    assert onset <= events[0].sample / 16000 <= onset + 0.4
    end = 1 + len(speech) / 32000
    assert end - 1.0 <= events[1].sample / 16000 <= end + 0.1
    quiet = Vad()
    noise = np.random.default_rng(0).normal(0, 2000, 16000 * 3).astype("<i2").tobytes()
    assert quiet.feed(silence(3)) == [] and quiet.feed(noise) == []


def test_a_camera_frame_goes_to_the_model_at_720p_encoded_once() -> None:
    frame = Frame("cam", 1, 0.0, np.full((1080, 1920, 3), 120, np.uint8))
    first = model_jpeg(frame)
    image = cv2.imdecode(np.frombuffer(first, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (720, 1280, 3)
    assert model_jpeg(frame) is first  # a second session gets the same bytes, no new encode
    small = Frame("cam", 2, 0.0, np.full((360, 640, 3), 120, np.uint8))
    assert cv2.imdecode(np.frombuffer(model_jpeg(small), np.uint8), 0).shape == (360, 640)


async def client_session(url: str, script, until: str = "response.done", timeout: float = 30):
    """Runs ``script(ws)`` while collecting server events until one of type ``until``."""
    events: list[dict] = []
    async with websockets.connect(url, max_size=None) as ws:
        ready = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert ready["type"] == "ready" and ready["session_id"].startswith("ws_")
        events.append(ready)

        async def collect() -> None:
            async for message in ws:
                event = json.loads(message)
                events.append(event)
                if event["type"] == until and (
                    until != "response.done" or event.get("status") == "completed"
                ):
                    return

        collector = asyncio.create_task(collect())
        await script(ws)
        await asyncio.wait_for(collector, timeout)
    return events


async def send_audio(ws, audio: bytes, speed: float = 4.0, chunk: int = 3200) -> None:
    for i in range(0, len(audio), chunk):
        await ws.send(
            json.dumps({"type": "audio", "data": base64.b64encode(audio[i : i + chunk]).decode()})
        )
        await asyncio.sleep(chunk / 32000 / speed)


def provider_config(fake: FakeRealtime, kind: str) -> dict:
    return {
        "realtime": {
            "providers": [{"kind": kind, "url": fake.url(kind), "api_key_env": "FAKE_RT_KEY"}]
        }
    }


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setenv("FAKE_RT_KEY", "sk-test")
    server = FakeRealtime()
    yield server
    server.close()


def ws_url(srv) -> str:
    return srv.url.replace("http", "ws") + "/ws/video"


def test_dashscope_turn_end_to_end(server, fake, speech) -> None:
    srv = server(provider_config(fake, "dashscope"))

    async def script(ws) -> None:
        async def frames() -> None:
            for _ in range(30):  # 10 fps for 3 s: the server forwards 2 fps
                await ws.send(json.dumps({"type": "video", "data": jpeg()}))
                await asyncio.sleep(0.1)

        await asyncio.gather(frames(), send_audio(ws, silence(1) + speech + silence(1.2), speed=2))

    events = asyncio.run(client_session(ws_url(srv), script))
    kinds = [e["type"] for e in events]
    assert kinds.index("speech.started") < kinds.index("speech.stopped") < kinds.index("transcript")
    assert next(e for e in events if e["type"] == "transcript")["text"] == TRANSCRIPT
    assert "".join(e["text"] for e in events if e["type"] == "text.delta") == "".join(DELTAS)
    audio = [e for e in events if e["type"] == "audio.delta"]
    assert audio and all(e["sample_rate"] == 24000 for e in audio)
    assert events[-1] == {"type": "response.done", "status": "completed"}
    assert "error" not in kinds

    # What the provider got, in its own protocol.
    conn = fake.connections[0]
    assert conn["path"] == "/api-ws/v1/realtime?model=qwen3-omni-flash-realtime"
    assert conn["headers"]["authorization"] == "Bearer sk-test"
    update = fake.of("session.update")[0]["session"]
    assert update["turn_detection"] is None and update["modalities"] == ["text", "audio"]
    assert update["input_audio_format"] == "pcm16"
    images = fake.of("input_image_buffer.append")
    assert 4 <= len(images) <= 8, len(images)  # 3 s at <= 2 fps
    gaps = [b["_at"] - a["_at"] for a, b in itertools.pairwise(images)]
    assert min(gaps) >= 0.45, gaps
    decoded = cv2.imdecode(
        np.frombuffer(base64.b64decode(images[0]["image"]), np.uint8), cv2.IMREAD_COLOR
    )
    assert decoded.shape[0] == 720  # 960 px high frames shrunk to 720p
    appends = fake.of("input_audio_buffer.append")
    sent = sum(len(base64.b64decode(a["audio"])) for a in appends)
    assert (
        len(speech) * 0.8 <= sent <= len(speech) + 32000 * 1.5
    )  # speech + preroll, not all silence
    order = [e["type"] for e in fake.events if e["type"] != "input_image_buffer.append"]
    assert order[-2:] == ["input_audio_buffer.commit", "response.create"]


def test_openai_protocol_resamples_to_24k_and_sends_images_as_items(server, fake, speech) -> None:
    srv = server(provider_config(fake, "openai"))

    async def script(ws) -> None:
        await ws.send(json.dumps({"type": "video", "data": jpeg(640, 480)}))
        await send_audio(ws, silence(0.5) + speech + silence(1.2), speed=4)

    events = asyncio.run(client_session(ws_url(srv), script))
    assert "".join(e["text"] for e in events if e["type"] == "text.delta") == "".join(DELTAS)
    assert fake.connections[0]["path"] == "/v1/realtime?model=gpt-realtime"
    update = fake.of("session.update")[0]["session"]
    assert update["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    item = fake.of("conversation.item.create")[0]["item"]
    part = item["content"][0]
    assert part["type"] == "input_image" and part["image_url"].startswith("data:image/jpeg;base64,")
    sent24 = sum(len(base64.b64decode(a["audio"])) for a in fake.of("input_audio_buffer.append"))
    assert sent24 >= len(speech) * 1.5 * 0.8  # 16 -> 24 kHz: 1.5x the bytes
    assert len(fake.of("input_audio_buffer.commit")) == 1


def test_barge_in_cancels_the_response(server, fake, speech) -> None:
    fake.delta_interval = 0.5  # a slow answer, interrupted
    srv = server(provider_config(fake, "dashscope"))
    events: list[dict] = []

    async def run() -> None:
        answering, finished = asyncio.Event(), asyncio.Event()
        async with websockets.connect(ws_url(srv), max_size=None) as ws:

            async def collect() -> None:
                async for message in ws:
                    events.append(json.loads(message))
                    if events[-1]["type"] == "text.delta":
                        answering.set()
                    if events[-1]["type"] == "response.done":
                        finished.set()

            collector = asyncio.create_task(collect())
            await send_audio(ws, silence(0.5) + speech + silence(1.0), speed=4)
            await asyncio.wait_for(answering.wait(), 20)
            await send_audio(ws, speech[: 32000 * 2], speed=1)  # the user talks over it
            await asyncio.wait_for(finished.wait(), 20)
            await asyncio.sleep(1.0)
            collector.cancel()

    asyncio.run(run())
    done = [e for e in events if e["type"] == "response.done"]
    assert done[0] == {"type": "response.done", "status": "cancelled", "reason": "barge_in"}
    assert len(done) == 1  # upstream's own "cancelled" is not repeated
    assert fake.of("response.cancel")
    first_done = events.index(done[0])
    assert not [e for e in events[first_done:] if e["type"] == "text.delta"]  # rest dropped
    assert len([e for e in events if e["type"] == "text.delta"]) < len(DELTAS)


def test_upstream_drop_reconnects_without_dropping_the_browser(server, fake, speech) -> None:
    fake.drop_after_appends = 5
    srv = server(provider_config(fake, "dashscope"))

    async def script(ws) -> None:
        await send_audio(ws, silence(0.5) + speech + silence(1.2), speed=4)

    events = asyncio.run(client_session(ws_url(srv), script))
    assert events[-1]["status"] == "completed"
    assert len(fake.connections) == 2  # reconnected
    assert len(fake.of("session.update")) == 2  # and set the session up again


def test_bad_input_gets_error_events_and_the_session_goes_on(server, speech) -> None:
    srv = server(
        {"realtime": {"providers": [{"kind": "dashscope", "api_key_env": "NO_SUCH_KEY_SET"}]}}
    )
    bad = [
        ("{not json", "bad_json"),
        (json.dumps([1, 2]), "bad_message"),
        (json.dumps({"type": "dance"}), "unknown_type"),
        (json.dumps({"type": "audio"}), "bad_message"),
        (json.dumps({"type": "audio", "data": "@@@"}), "bad_base64"),
        (json.dumps({"type": "audio", "data": base64.b64encode(b"abc").decode()}), "bad_audio"),
        (
            json.dumps({"type": "audio", "data": base64.b64encode(bytes(64002)).decode()}),
            "audio_too_large",
        ),
        (
            json.dumps({"type": "video", "data": base64.b64encode(b"GIF89a....").decode()}),
            "bad_image",
        ),
        (
            json.dumps({"type": "video", "data": base64.b64encode(b"\xff\xd8garbage").decode()}),
            "bad_image",
        ),
    ]

    async def run() -> list[dict]:
        async with websockets.connect(ws_url(srv), max_size=None) as ws:
            ready = json.loads(await ws.recv())
            assert ready["provider"] is None
            first = json.loads(await ws.recv())
            assert first["type"] == "error" and first["code"] == "provider_unavailable"
            got = []
            for raw, _ in bad:
                await ws.send(raw)
                got.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
            await ws.send(b"\x00binary")
            got.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
            # Still usable: VAD runs, and the turn end says clearly that no model answers.
            await send_audio(ws, silence(0.5) + speech + silence(1.2), speed=4)
            async with asyncio.timeout(15):
                while not got or got[-1].get("code") != "provider_unavailable":
                    got.append(json.loads(await ws.recv()))
            return got

    got = asyncio.run(run())
    codes = [e.get("code") for e in got[: len(bad)]]
    assert codes == [code for _, code in bad]
    assert got[len(bad)]["code"] == "bad_message"  # binary
    tail = [e["type"] for e in got[len(bad) + 1 :]]
    assert tail == ["speech.started", "speech.stopped", "error"]
    assert "NO_SUCH_KEY_SET is not set" in got[-1]["message"]
    import httpx

    status = httpx.get(srv.url + "/api/realtime").json()
    assert status["totals"]["errors"] >= len(bad) + 2
    metrics = httpx.get(srv.url + "/metrics").text
    assert 'vlm_realtime_latency_seconds{quantile="0.5",what="onset"}' in metrics


def test_a_live_rtsp_camera_is_the_picture_and_the_browser_the_voice(
    server, fake, speech, rtsp_server
) -> None:
    """``?source=`` takes any stream: the model gets that camera's frames at the session's
    rate (from the hub, none sent by the client) and the client's microphone."""
    import httpx

    config = provider_config(fake, "dashscope")
    config["realtime"]["video_fps"] = 3
    # 480x272: a size only this camera has, so every image the model got is from it.
    config["streams"] = [{"id": "gate", "url": rtsp_server(size="480x272", fps=15)}]
    srv = server(config)
    status = lambda: httpx.get(srv.url + "/api/streams/gate").json()  # noqa: E731
    wait_until(lambda: status()["state"] == "live", 20, what="camera live")
    idle_subscribers = status()["subscribers"]

    async def refused() -> tuple[dict, int | None]:
        async with websockets.connect(ws_url(srv) + "?source=nope") as ws:
            event = json.loads(await ws.recv())
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.recv()
            return event, ws.close_code

    event, code = asyncio.run(refused())
    assert event["code"] == "bad_source" and "'nope'" in event["message"] and code == 1008

    async def script(ws) -> None:
        # Audio only, paced in real time for ~4.5 s, while the camera's frames flow.
        await send_audio(ws, silence(1) + speech + silence(1.2), speed=1)

    events = asyncio.run(client_session(ws_url(srv) + "?source=gate", script))
    kinds = [e["type"] for e in events]
    assert kinds.index("speech.started") < kinds.index("speech.stopped") < kinds.index("transcript")
    assert "".join(e["text"] for e in events if e["type"] == "text.delta") == "".join(DELTAS)
    assert "error" not in kinds

    images = fake.of("input_image_buffer.append")
    span = images[-1]["_at"] - images[0]["_at"]
    rate = (len(images) - 1) / span
    assert 2.0 <= rate <= 3.6, (len(images), span)  # the session's 3 fps, not the camera's 15
    shapes = {
        cv2.imdecode(np.frombuffer(base64.b64decode(i["image"]), np.uint8), cv2.IMREAD_COLOR).shape
        for i in images
    }
    assert shapes == {(272, 480, 3)}
    assert len({i["image"] for i in images}) > len(images) // 2  # a moving picture, live
    sent = sum(len(base64.b64decode(a["audio"])) for a in fake.of("input_audio_buffer.append"))
    assert len(speech) * 0.8 <= sent <= len(speech) + 32000 * 1.5  # the client's speech
    assert fake.of("input_audio_buffer.commit")
    # The session's subscription is gone with the session.
    wait_until(lambda: status()["subscribers"] == idle_subscribers, 5, what="unsubscribed")


def speak_one_turn(page) -> None:
    """/chat: connect, start talking (the fake microphone's speech), wait for the answer."""
    page.click("#connect")
    page.wait_for_function(
        "() => document.getElementById('session').dataset.sessionId", timeout=10000
    )
    page.click("#start")
    page.wait_for_function(
        "() => document.getElementById('response').dataset.done === 'completed'", timeout=40000
    )


@pytest.mark.browser
def test_chat_page_in_chromium_streams_and_shows_the_answer(
    server, fake, speech_wav, tmp_path
) -> None:
    srv = server(provider_config(fake, "dashscope"))
    with chromium(
        *CHROMIUM_MEDIA_FLAGS,
        f"--use-file-for-fake-audio-capture={speech_wav}",
        "--autoplay-policy=no-user-gesture-required",
    ) as browser:
        page = browser.new_page()
        page.goto(srv.url + "/chat")
        speak_one_turn(page)
        shown = page.inner_text("#response")
        page.screenshot(path=str(tmp_path / "chat.png"))
    assert "".join(DELTAS).strip() in shown
    assert fake.of("input_image_buffer.append")  # the fake camera's frames reached the model
    assert fake.of("input_audio_buffer.commit")


@pytest.mark.browser
def test_chat_page_talks_about_a_picked_server_camera(server, fake, speech_wav) -> None:
    config = provider_config(fake, "dashscope")
    config["streams"] = [{"id": "yard", "url": "synthetic://?fps=10&size=320x240"}]
    srv = server(config)
    with chromium(
        *CHROMIUM_MEDIA_FLAGS,
        f"--use-file-for-fake-audio-capture={speech_wav}",
        "--autoplay-policy=no-user-gesture-required",
    ) as browser:
        page = browser.new_page()
        page.goto(srv.url + "/chat")
        page.wait_for_selector("#source option[value=yard]", state="attached", timeout=10000)
        page.select_option("#source", "yard")
        page.wait_for_function(
            "() => document.getElementById('source-view').naturalWidth === 320", timeout=10000
        )
        speak_one_turn(page)
        assert page.locator("#preview").is_hidden()
        assert "".join(DELTAS).strip() in page.inner_text("#response")
    images = fake.of("input_image_buffer.append")
    sizes = {
        cv2.imdecode(np.frombuffer(base64.b64decode(i["image"]), np.uint8), 0).shape for i in images
    }
    assert sizes == {(240, 320)}  # the server's camera, not the browser's (640x480)
    assert fake.of("input_audio_buffer.commit")  # the browser's microphone
