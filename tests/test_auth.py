"""Authentication and limits, over a real server: every route of the app is tried without a
token, with a wrong one, with the viewer token and with the API token. The expected access of
each route is the table below; a route missing from it must be control-only, so a new route
that is not protected fails here."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import httpx
import pytest
import websockets
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.routing import Mount

from vlm_monitor.app import API_MODULES, create_app
from vlm_monitor.config import build_config
from vlm_monitor.testing import ChildProcess, free_port, wait_until

API, VIEWER = "api-token-0123456789", "viewer-token-0123456789"
OPEN = {
    ("GET", "/health"),
    ("GET", "/health/ready"),
    ("GET", "/chat"),
    ("GET", "/publish"),
    ("GET", "/wall"),
}
# Read-only: what a dashboard viewer needs.
VIEWER_ROUTES = {
    ("GET", p)
    for p in (
        "/api/alerts", "/api/analyses", "/api/analyzers", "/api/budgets", "/api/events",
        "/api/events/counts",
        "/api/events/{event_id}",
        "/api/events/{event_id}/snapshot.jpg", "/api/events/{event_id}/clip.mp4",
        "/api/flow-nodes", "/api/flows",
        "/api/flows/{flow_id}", "/api/flows/{flow_id}/runs", "/api/flows/{flow_id}/runs/{run_id}",
        "/api/providers", "/api/realtime", "/api/results", "/api/results/{result_id}",
        "/api/results/{result_id}/clip", "/api/rtsp/status", "/api/sessions",
        "/api/sessions/{session_id}/summary", "/api/status",
        "/api/streams", "/api/streams/{stream_id}", "/api/streams/{stream_id}/frame.jpg",
        "/api/streams/{stream_id}/mjpeg",
    )
} | {("POST", "/whep/{stream_id}"), ("DELETE", "/whep/{stream_id}/{resource_id}"),
     ("WS", "/ws/events"), ("WS", "/ws/wall")}  # fmt: skip
# The publisher's own per-stream token (tested in test_whip.py).
PUBLISH = {("POST", "/whip/{stream_id}"), ("DELETE", "/whip/{stream_id}/{resource_id}")}


def config(tmp_path: Path, **server) -> dict:
    return {
        "server": {"api_token": API, "viewer_token": VIEWER, "data_dir": str(tmp_path / "d"),
                   **server},
        "streams": [{"id": "cam", "url": "synthetic://?fps=5&size=320x180"}],
    }  # fmt: skip


def routes(tmp_path: Path) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, from the app itself."""
    app = create_app(build_config(config(tmp_path)))
    ours = [r for module in API_MODULES for r in module.router.routes]
    found = []
    for route in [*ours, *app.routes]:
        if isinstance(route, APIRoute):
            found += [(m, route.path) for m in sorted(route.methods - {"HEAD"})]
        elif isinstance(route, APIWebSocketRoute):
            found.append(("WS", route.path))
        elif isinstance(route, Mount) and route.path == "/socket.io":
            found.append(("GET", "/socket.io/"))
        elif hasattr(route, "methods"):  # FastAPI's own: /openapi.json, /docs, /redoc
            found += [(m, route.path) for m in sorted(route.methods - {"HEAD"})]
    return found


def expected(method: str, path: str) -> str:
    if (method, path) in OPEN:
        return "open"
    if (method, path) in PUBLISH:
        return "publish"
    if (method, path) in VIEWER_ROUTES or path == "/socket.io/":
        return "viewer"
    return "control"


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: "cam" if m.group(0) == "{stream_id}" else "1", path)


def http_status(srv, method: str, path: str, token: str | None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    params = {"EIO": "4", "transport": "polling"} if path == "/socket.io/" else {}
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        with c.stream(method, concrete(path), headers=headers, params=params) as r:
            # A live view never ends: its first bytes are enough.
            return r.status_code, next(r.iter_bytes(), b"")[:300]


def ws_status(srv, path: str, token: str | None) -> tuple[int, bytes]:
    """101 when the handshake is accepted, else the HTTP status and body it was refused with."""

    async def run() -> tuple[int, bytes]:
        url = srv.url.replace("http", "ws", 1) + concrete(path)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            async with websockets.connect(url, additional_headers=headers, open_timeout=5):
                return 101, b""
        except websockets.InvalidStatus as exc:
            return exc.response.status_code, exc.response.body or b""

    return asyncio.run(run())


def refused(result: tuple[int, bytes], status: int | None = None) -> bool:
    """Refused by the guard (not by the route, e.g. a 403 for an unknown subscription)."""
    code, body = result
    return code in ((status,) if status else (401, 403)) and b"token" in body


def test_every_route_checks_its_token(server, tmp_path) -> None:
    table = routes(tmp_path / "probe")
    assert len(table) > 50 and ("GET", "/api/streams") in table
    srv = server(config(tmp_path))
    checked = []
    for method, path in table:
        kind = expected(method, path)
        if kind == "publish":
            continue
        try_ = (lambda t, m=method, p=path: ws_status(srv, p, t)) if method == "WS" else (
            lambda t, m=method, p=path: http_status(srv, m, p, t)
        )  # fmt: skip
        none, wrong, viewer, api = try_(None), try_("wrong-token-xyz"), try_(VIEWER), try_(API)
        where = f"{method} {path}"
        if kind == "open":
            assert not refused(none), where
            continue
        assert refused(none, 401) and refused(wrong, 401), (where, none, wrong)
        assert not refused(api), (where, api)
        if kind == "viewer":
            assert not refused(viewer), (where, viewer)
        else:
            assert refused(viewer, 403), (where, viewer)
        checked.append(where)
    assert "WS /ws/video" in checked and "POST /api/streams" in checked
    assert "GET /metrics" in checked and "GET /internal/video/status" in checked

    # No secret in /api/status, /api/config or the logs.
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {API}"}) as c:
        texts = [c.get("/api/status").text, c.get("/api/config").text]
    texts += [p.read_text() for p in (tmp_path / "logs").glob("*")] + [srv.output()]
    for text in texts:
        assert API not in text and VIEWER not in text


def test_the_token_can_come_as_a_query_parameter_and_metrics_can_be_public(
    server, tmp_path
) -> None:
    srv = server(config(tmp_path, metrics_public=True))
    with httpx.Client(base_url=srv.url) as c:
        assert c.get("/metrics").status_code == 200
        assert c.get("/api/streams", params={"token": VIEWER}).status_code == 200
        r = c.post("/api/streams", params={"token": VIEWER}, json={})
        assert r.status_code == 403 and "read-only" in r.json()["error"]
        r = c.get("/api/streams")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert ws_status(srv, f"/ws/events?token={VIEWER}", None)[0] == 101


def test_cross_origin_is_refused_unless_allowed(server, tmp_path) -> None:
    srv = server(config(tmp_path, cors_origins=["http://dash.example"]))

    async def handshake(origin: str) -> int:
        url = srv.url.replace("http", "ws", 1) + f"/ws/events?token={VIEWER}"
        try:
            async with websockets.connect(url, origin=origin, open_timeout=5):  # type: ignore[arg-type]
                return 101
        except websockets.InvalidStatus as exc:
            return exc.response.status_code

    assert asyncio.run(handshake("http://evil.example")) == 403
    assert asyncio.run(handshake("http://dash.example")) == 101
    assert asyncio.run(handshake(srv.url)) == 101  # same origin
    with httpx.Client(base_url=srv.url) as c:
        pre = {"Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "authorization"}  # fmt: skip
        ok = c.options("/api/streams", headers={"Origin": "http://dash.example", **pre})
        assert ok.headers.get("access-control-allow-origin") == "http://dash.example"
        bad = c.options("/api/streams", headers={"Origin": "http://evil.example", **pre})
        assert "access-control-allow-origin" not in bad.headers


def test_limits_answer_413_and_429(server, tmp_path) -> None:
    srv = server(
        {**config(tmp_path, max_body_bytes=4096, max_connections_per_client=2, max_streams=2,
                  max_flows=1)}
    )  # fmt: skip
    auth = {"Authorization": f"Bearer {API}"}
    with httpx.Client(base_url=srv.url, headers=auth, timeout=10) as c:
        big = {"id": "x", "url": "synthetic://", "pad": "a" * 5000}
        r = c.post("/api/streams", json=big)
        assert r.status_code == 413 and "4096" in r.json()["error"]

        def chunks():
            for _ in range(10):
                yield b"a" * 1000

        r = c.post("/api/streams", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413  # no Content-Length: counted while read

        assert c.post("/api/streams", json={"id": "two", "url": "synthetic://"}).status_code == 201
        r = c.post("/api/streams", json={"id": "three", "url": "synthetic://"})
        assert r.status_code == 429 and "max_streams" in r.json()["error"]
        assert [s["id"] for s in c.get("/api/streams").json()] == ["cam", "two"]

        flow = {"id": "f1", "nodes": [{"id": "w", "type": "wait", "params": {"seconds": 0.1}}]}
        assert c.post("/api/flows", json=flow).status_code == 201
        r = c.post("/api/flows", json={**flow, "id": "f2"})
        assert r.status_code == 429 and "max_flows" in r.json()["error"]

    # Two live views from one address are fine, the third is refused; closing one frees a slot.
    with httpx.Client(base_url=srv.url, headers=auth, timeout=10) as c:
        with (
            c.stream("GET", "/api/streams/cam/mjpeg") as a,
            c.stream("GET", "/api/streams/cam/mjpeg") as b,
        ):
            assert a.status_code == 200 and b.status_code == 200
            r = c.get("/api/streams/cam/mjpeg")
            assert r.status_code == 429 and "open connections" in r.json()["error"]
        # The server may see a retry before it notices the closed view: those are refused too.
        seen: list[int] = []
        wait_until(
            lambda: seen.append(_stream_status(c, "/api/streams/cam/mjpeg")) or seen[-1] == 200,
            10,
            what="a slot freed",
        )
        metrics = c.get("/metrics").text
    assert 'vlm_http_refused_total{status="413"} 2.0' in metrics
    assert f'vlm_http_refused_total{{status="429"}} {1.0 + seen.count(429)}' in metrics


def _stream_status(c: httpx.Client, path: str) -> int:
    with c.stream("GET", path) as r:
        return r.status_code


@pytest.mark.parametrize("token", [None, API])
def test_a_public_bind_without_a_token_warns(tmp_path, token) -> None:
    cfg = tmp_path / "c.json"
    server = {"port": free_port(), "data_dir": str(tmp_path / "d"), "log_dir": str(tmp_path)}
    if token:
        server["api_token"] = token
    cfg.write_text(json.dumps({"server": server}))
    proc = ChildProcess(
        [sys.executable, "-m", "vlm_monitor", "serve", "--config", str(cfg), "--host", "0.0.0.0"],
        tmp_path / "out",
    )
    try:
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{server['port']}/health").status_code == 200,
            30, what="server up",
        )  # fmt: skip
    finally:
        proc.stop()
    warned = "WARNING: serving on 0.0.0.0 without server.api_token" in proc.output()
    assert warned is (token is None)
