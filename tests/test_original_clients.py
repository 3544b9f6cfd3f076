"""Programs written for the original system, sending what they always sent: the inference
client's calls that name no stream, the ``stream.tcp`` config form with its comments, and the
frontend's ``canvas.toDataURL()`` frames."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import websockets

from vlm_monitor.config import ConfigError, build_config, load_config
from vlm_monitor.realtime.protocol import ProtocolError, parse
from vlm_monitor.testing import wait_until

SYNTHETIC = "synthetic://?fps=5&size=320x180"


def test_internal_calls_without_a_stream_use_the_only_one(server) -> None:
    srv = server({"streams": [{"id": "cam", "url": SYNTHETIC}]})
    with srv.client() as c:
        frame = c.get("/internal/video/latest-frame", params={"timeout": 10, "after_seq": 0})
        assert frame.status_code == 200 and frame.content.startswith(b"\xff\xd8")
        subscribed = c.post("/internal/video/subscribe")  # no body at all
        assert subscribed.status_code == 201, subscribed.text
        assert subscribed.json()["stream"] == "cam"
        assert c.post("/api/streams", json={"id": "cam2", "url": SYNTHETIC}).status_code == 201
        ambiguous = c.get("/internal/video/latest-frame")
        assert ambiguous.status_code == 422
        assert "['cam', 'cam2']" in ambiguous.json()["error"]
        assert c.post("/internal/video/subscribe").status_code == 422
        named = c.post("/internal/video/subscribe", json={"stream": "cam2"})
        assert named.status_code == 201 and named.json()["stream"] == "cam2"


def test_stream_tcp_form_takes_an_id_and_says_when_it_has_none(caplog) -> None:
    named = build_config({"stream": {"type": "tcp", "tcp": {"host": "10.0.0.5", "port": 8888,
                                                             "id": "lab"}}}, env={})  # fmt: skip
    assert [(s.id, s.url) for s in named.streams] == [("lab", "tcp://10.0.0.5:8888")]
    with caplog.at_level(logging.WARNING, logger="vlm_monitor.config"):
        unnamed = build_config({"stream": {"tcp": {"host": "10.0.0.5", "port": 8888}}}, env={})
    assert unnamed.streams[0].id == "camera"
    assert "stream.tcp.id" in caplog.text


def test_a_second_camera_connection_is_refused_with_the_reason() -> None:
    legacy = {"stream": {"tcp": {"host": "h", "port": 1, "use_backend_client": False}}}
    with pytest.raises(ConfigError, match="second connection"):
        build_config(legacy, env={})
    assert build_config({"worker": {"use_backend_client": True}}, env={}).worker


def test_json_config_may_carry_comments(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(
        """{
  // the original example config, as shipped
  "stream": {
    "type": "tcp",
    "tcp": {"host": "127.0.0.1", "port": 8888, "id": "cam1", /* the test camera */
            "backend_url": "http://127.0.0.1:8080", "frame_rate": 5}
  },
  "server": {"port": 8081}
}"""
    )
    config = load_config(path, env={})
    assert config.streams[0].url == "tcp://127.0.0.1:8888" and config.server.port == 8081
    assert config.worker.backend_url == "http://127.0.0.1:8080"
    path.write_text('{"server": {"port": }}')
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(path, env={})


def _jpeg_data_url() -> str:
    image = np.full((120, 160, 3), 128, np.uint8)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()


def test_data_url_frames_are_taken_once_their_type_is_checked(server) -> None:
    config = build_config({}, env={}).realtime
    url = _jpeg_data_url()
    message = parse(json.dumps({"type": "video", "data": url}), config)
    assert message.type == "video" and message.data.startswith(b"\xff\xd8")
    png = "data:image/png;base64," + url.partition(",")[2]
    with pytest.raises(ProtocolError, match="image/jpeg") as refused:
        parse(json.dumps({"type": "video", "data": png}), config)
    assert refused.value.code == "bad_image"

    srv = server({"realtime": {"video_fps": 15}})

    async def session() -> list[str]:
        codes = []
        async with websockets.connect(f"ws://127.0.0.1:{srv.port}/ws/video") as ws:
            await ws.send(json.dumps({"type": "video", "data": url}))
            await asyncio.sleep(0.2)
            await ws.send(json.dumps({"type": "video", "data": png}))
            await ws.send(json.dumps({"type": "close"}))
            async for raw in ws:
                doc = json.loads(raw)
                if doc["type"] == "error":
                    codes.append(doc["code"])
        return codes

    codes = asyncio.run(session())
    assert "bad_base64" not in codes and codes.count("bad_image") == 1, codes
    with srv.client() as c:
        totals = c.get("/api/realtime").json()["totals"]
    assert totals["frames_received"] == 1, totals  # the JPEG; the PNG was refused unread


@pytest.mark.rtsp
def test_rtsp_start_builds_the_url_from_the_mediamtx_base(server, rtsp_server) -> None:
    url = rtsp_server(path="exam-7-user-3", size="320x180", fps=10)
    base = url.rpartition("/")[0]
    srv = server({"analysis": {"rtsp_base": base}})
    with srv.client() as c:
        started = c.post("/api/rtsp/start", json={"stream_name": "exam-7-user-3", "analyzers": []})
        assert started.status_code == 200, started.text
        status = wait_until(
            lambda: (s := c.get("/api/streams/exam-7-user-3").json())["state"] == "live" and s,
            20,
        )
        assert status["url"] == url
    bare = server()
    with bare.client() as c:
        refused = c.post("/api/rtsp/start", json={"stream_name": "x"})
        assert refused.status_code == 422 and "MEDIAMTX_HOST" in refused.json()["error"]


def test_rtsp_base_defaults_from_mediamtx_host(monkeypatch) -> None:
    monkeypatch.setenv("MEDIAMTX_HOST", "mediamtx.lan")
    assert build_config({}, env={}).analysis.rtsp_base == "rtsp://mediamtx.lan:8554"
    monkeypatch.delenv("MEDIAMTX_HOST")
    assert build_config({}, env={}).analysis.rtsp_base is None
    with pytest.raises(ConfigError, match="rtsp://"):
        build_config({"analysis": {"rtsp_base": "http://x"}}, env={})
