"""What an attacker on the same network can try against a running server, each sent as they
would send it: tokens carried in URLs must not reach the logs, WHIP must not publish without
credentials, slow or numerous connections must not be held, a page on another site (or a
rebound DNS name) must not drive the server, webhooks must not reach the internal network,
and odd posted results must not break reading them back."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import websockets

from vlm_monitor.config import ConfigError, build_config
from vlm_monitor.flows.nodes.base import NodeError
from vlm_monitor.flows.nodes.notify import check_target
from vlm_monitor.testing import wait_until

API, VIEWER, PUBLISH = "api-token-0123456789", "viewer-token-0123456789", "publish-0123456789"


def tokens(**server: object) -> dict:
    return {"api_token": API, "viewer_token": VIEWER, **server}


def test_tokens_in_urls_never_reach_the_logs(server, tmp_path: Path) -> None:
    srv = server(
        {
            "server": tokens(),
            "streams": [{"id": "cam", "url": "synthetic://?fps=5&size=320x180"}],
        }
    )

    async def events() -> None:
        async with websockets.connect(f"ws://127.0.0.1:{srv.port}/ws/events?token={API}") as ws:
            await asyncio.wait_for(ws.recv(), 10)

    asyncio.run(events())
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        frame = wait_until(
            lambda: (
                (r := c.get(f"/api/streams/cam/frame.jpg?token={VIEWER}")).status_code == 200 and r
            ),
            15,
        )
        assert frame.headers["content-type"] == "image/jpeg"
        assert c.get(f"/api/streams?token={API}&x=1").status_code == 200
    srv.stop()
    written = srv.output() + "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    # uvicorn logs the WebSocket request line; its query string is there, redacted.
    assert "WebSocket /ws/events?<redacted>" in written
    assert API not in written and VIEWER not in written


def test_whip_needs_a_token_once_the_server_has_one(server) -> None:
    srv = server({"server": tokens(), "streams": [{"id": "pub", "url": "whip://"}]})
    offer = {"content-type": "application/sdp"}
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        anonymous = c.post("/whip/pub", content="v=0\r\n", headers=offer)
        assert anonymous.status_code == 401, anonymous.text
        assert "publish token" in anonymous.json()["error"]
        assert c.delete("/whip/pub/abc").status_code == 401
        viewer = {**offer, "Authorization": f"Bearer {VIEWER}"}
        assert c.post("/whip/pub", content="v=0\r\n", headers=viewer).status_code == 401
        # The API token passes the door; the offer itself is then judged (and refused).
        api = {**offer, "Authorization": f"Bearer {API}"}
        assert c.post("/whip/pub", content="v=0\r\n", headers=api).status_code == 400
        delete = c.delete("/whip/pub/abc", headers={"Authorization": f"Bearer {API}"})
        assert delete.status_code == 404


def test_open_auto_create_is_refused_when_the_server_has_a_token() -> None:
    with pytest.raises(ConfigError, match="publish_token"):
        build_config({"server": {"api_token": API}, "webrtc": {"auto_create": True}}, env={})
    ok = {"server": {"api_token": API}, "webrtc": {"auto_create": True, "publish_token": PUBLISH}}
    assert build_config(ok, env={}).webrtc.auto_create


def _read_until_closed(sock: socket.socket, limit: float) -> bytes:
    sock.settimeout(limit)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_headers_trickled_slowly_are_cut_off(server) -> None:
    srv = server({"server": {"header_timeout_s": 1.0}})
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        answer = b""
        for i in range(10):  # a header line every 0.3 s, never the blank line
            try:
                sock.sendall(f"X-Slow-{i}: 1\r\n".encode())
            except OSError:
                break
            time.sleep(0.3)
        answer = _read_until_closed(sock, 5)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert time.monotonic() - started < 3.5
    with socket.create_connection(("127.0.0.1", srv.port)) as idle:  # sends nothing at all
        assert _read_until_closed(idle, 5).startswith(b"HTTP/1.1 408")
    with srv.client() as c:
        assert c.get("/health").status_code == 200  # a normal request is not affected
        metrics = c.get("/metrics").text
    assert 'vlm_http_refused_total{status="408"} 2.0' in metrics


def test_socketio_sessions_are_capped_per_client_and_in_total(server) -> None:
    srv = server({"server": {"max_socketio_sessions": 5, "max_connections_per_client": 3}})
    handshake = "/socket.io/?EIO=4&transport=polling"

    def client(address: str) -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=address)
        return httpx.Client(base_url=srv.url, transport=transport, timeout=10)

    with client("127.0.0.1") as first, client("127.0.0.2") as second:
        opened = [first.get(handshake) for _ in range(3)]
        assert [r.status_code for r in opened] == [200] * 3
        refused = first.get(handshake)
        assert refused.status_code == 429 and "from this address" in refused.json()["error"]
        assert [second.get(handshake).status_code for _ in range(2)] == [200] * 2
        full = second.get(handshake)
        assert full.status_code == 429 and "5 Socket.IO sessions" in full.json()["error"]
        # A session already open goes on polling: only new handshakes are counted.
        sid = json.loads(opened[0].text[1:])["sid"]  # Engine.IO 4: "0" + the open packet
        connect = first.post(f"{handshake}&sid={sid}", content="40")  # Socket.IO CONNECT
        assert connect.status_code == 200 and connect.text == "OK"
    with srv.client() as c:
        assert 'vlm_http_refused_total{status="429"} 2.0' in c.get("/metrics").text


def _jpeg(size: int) -> str:
    noise = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", noise, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return base64.b64encode(buf.tobytes()).decode()


def test_realtime_bytes_per_second_are_limited(server) -> None:
    srv = server({"realtime": {"max_bytes_per_s": 200_000, "max_message_bytes": 200_000}})
    frame = json.dumps({"type": "video", "data": _jpeg(200)})
    assert 60_000 < len(frame) < 200_000

    async def flood() -> list[dict]:
        errors = []
        async with websockets.connect(f"ws://127.0.0.1:{srv.port}/ws/video") as ws:
            for _ in range(10):
                await ws.send(frame)
            await ws.send(json.dumps({"type": "close"}))
            async for raw in ws:
                doc = json.loads(raw)
                if doc["type"] == "error":
                    errors.append(doc)
        return errors

    errors = asyncio.run(flood())
    limited = [e for e in errors if e["code"] == "rate_limited"]
    assert limited and "200000 bytes/s" in limited[0]["message"], errors


def test_host_header_must_name_this_server(server) -> None:
    srv = server()  # bound to loopback, no token: the case DNS rebinding aims at
    with srv.client() as c:
        rebound = c.get("/api/streams", headers={"Host": f"attacker.example:{srv.port}"})
        assert rebound.status_code == 400 and "allowed_hosts" in rebound.json()["error"]
        assert c.get("/api/streams", headers={"Host": f"localhost:{srv.port}"}).status_code == 200
        assert c.get("/health").status_code == 200
    named = server({"server": {"allowed_hosts": ["cams.example"]}})
    with named.client() as c:
        assert c.get("/api/streams", headers={"Host": "cams.example"}).status_code == 200
        assert c.get("/api/streams", headers={"Host": "localhost"}).status_code == 400
        # Liveness probes address the server by IP whatever its names: /health says only "ok".
        assert c.get("/health", headers={"Host": "10.0.0.7"}).status_code == 200


def test_cross_site_changes_are_refused_without_a_token(server) -> None:
    srv = server()
    flow = {"id": "f", "nodes": [{"id": "w", "type": "wait", "params": {"seconds": 0}}]}
    with srv.client() as c:
        assert c.post("/api/flows", json=flow).status_code == 201
        # A form or fetch from another site: a "simple" request, sent without a preflight.
        evil = c.post("/api/flows/f/run", headers={"Origin": "http://attacker.example"})
        assert evil.status_code == 403 and "origin" in evil.json()["error"]
        fetched = c.post("/api/flows/f/run", headers={"Sec-Fetch-Site": "cross-site"})
        assert fetched.status_code == 403
        own = c.post("/api/flows/f/run", headers={"Origin": srv.url})
        assert own.status_code == 202, own.text
        assert c.post("/api/flows/f/run").status_code == 202  # programs send no Origin


@pytest.mark.parametrize(
    ("host", "allow", "allowed"),
    [
        ("127.0.0.1", [], False),
        ("localhost", [], False),
        ("10.1.2.3", [], False),
        ("192.168.0.10", [], False),
        ("169.254.169.254", [], False),  # cloud metadata
        ("::1", [], False),
        ("127.0.0.1", ["127.0.0.1"], True),
        ("10.1.2.3", ["10.0.0.0/8"], True),
        ("localhost", ["localhost"], True),
        ("8.8.8.8", [], True),
    ],
)
def test_webhook_targets_inside_the_network_need_listing(host, allow, allowed) -> None:
    async def check() -> None:
        await check_target(host, 80, allow)

    if allowed:
        asyncio.run(check())
    else:
        with pytest.raises(NodeError, match="webhook_allow"):
            asyncio.run(check())


def test_webhook_to_this_machine_fails_the_run_naming_the_setting(server) -> None:
    srv = server()
    flow = {
        "id": "hook",
        "nodes": [{"id": "post", "type": "webhook", "params": {"url": f"{srv.url}/health"}}],
    }
    with srv.client() as c:
        assert c.post("/api/flows", json=flow).status_code == 201
        run_id = c.post("/api/flows/hook/run").json()["run_id"]
        run = wait_until(
            lambda: (
                (r := c.get(f"/api/flows/hook/runs/{run_id}").json())["status"] != "running" and r
            ),
            10,
        )
    assert run["status"] == "failed"
    assert "server.webhook_allow" in json.dumps(run["nodes"])


def test_posted_results_without_a_clip_or_with_huge_extras(server) -> None:
    srv = server({"streams": [{"id": "cam", "url": "synthetic://?fps=5&size=320x180"}]})
    base = {
        "stream": "cam",
        "result": "ok",
        "video_info": {},
        "inference_start_time": 1.0,
        "inference_end_time": 2.0,
    }
    with srv.client() as c:
        posted = c.post("/api/results", json=base)
        assert posted.status_code == 201, posted.text
        clip = c.get(f"/api/results/{posted.json()['id']}/clip")
        assert clip.status_code == 404 and "no clip" in clip.json()["error"]
        huge = c.post("/api/results", json={**base, "notes": "x" * 7_000_000})
        assert huge.status_code == 422 and "over 65536" in huge.json()["error"]
        assert len(c.get("/api/results").json()) == 1  # nothing stored from the refused one
