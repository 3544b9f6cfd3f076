"""A frontend on its own origin (an exam app's dev server) against a real backend, in real
Chromium with the official socket.io-client: Socket.IO and ``/ws/video`` work from origins in
``server.cors_origins`` (the token in ``?token=``) and are refused from any other."""

from __future__ import annotations

import functools
import shutil
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from vlm_monitor.testing import ServerProcess, chromium

CLIENT = Path(__file__).parent / "support" / "socketio-client" / "socket.io.min.js"
API, VIEWER = "api-token-0123456789", "viewer-token-0123456789"
EMOTION_KEYS = {"dominant_emotion", "face_detected", "confidence", "emotions"}

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>exam frontend</title>
<script src="socket.io.min.js"></script>
<script>
  window.received = [];
  window.errors = [];
  window.joined = null;
  window.transport = null;
  window.connectMonitor = (server, options) => {
    // reconnection off: a refused connection must stay refused, not retry while we look.
    const socket = io(server + "/monitor", { reconnection: false, ...options });
    socket.on("connect", () => {
      socket.emit("join", { stream_name: "cam" }, (ack) => { window.joined = ack; });
    });
    socket.on("connect_error", (err) => window.errors.push(String(err && err.message)));
    socket.on("student.emotion", (data) => {
      window.received.push(data);
      window.transport = socket.io.engine.transport.name;
    });
    window.socket = socket;
  };
  window.video = { messages: [], error: false, closed: null };
  window.openVideo = (url) => {
    const ws = new WebSocket(url);
    ws.onmessage = (e) => window.video.messages.push(JSON.parse(e.data));
    ws.onerror = () => { window.video.error = true; };
    ws.onclose = (e) => { window.video.closed = e.code; };
  };
</script>
"""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Starts static sites (the page and the vendored client) on ports of their own; each
    call returns a new origin."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text(PAGE)
    shutil.copy(CLIENT, root / CLIENT.name)
    servers: list[ThreadingHTTPServer] = []

    def start() -> str:
        handler = functools.partial(_Quiet, directory=str(root))
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def monitored(server: Callable[..., ServerProcess], listed: str) -> ServerProcess:
    return server(
        {
            "server": {"api_token": API, "viewer_token": VIEWER, "cors_origins": [listed]},
            "streams": [
                {
                    "id": "cam",
                    "url": "synthetic://?fps=15&size=640x360&scene=face",
                    "analyzers": [{"name": "emotion", "fps": 5}],
                }
            ],
        }
    )


def open_page(browser: Any, url: str) -> tuple[Any, list[list[dict[str, str]]]]:
    """A page, and the response headers of every Socket.IO request it makes (as the browser
    got them, repeated headers kept)."""
    page = browser.new_page()
    seen: list[list[dict[str, str]]] = []
    page.on(
        "response",
        lambda r: seen.append(r.headers_array()) if "/socket.io/" in r.url else None,
    )
    page.goto(url)
    return page, seen


def connect(page: Any, srv: ServerProcess, options: dict[str, Any]) -> None:
    page.evaluate("([url, options]) => window.connectMonitor(url, options)", [srv.url, options])


def allow_origin(headers: list[dict[str, str]]) -> list[str]:
    return [h["value"] for h in headers if h["name"].lower() == "access-control-allow-origin"]


@pytest.mark.browser
def test_socketio_from_a_listed_origin_in_chromium(server, site, browser) -> None:
    listed = site()
    srv = monitored(server, listed)
    query = {"token": VIEWER, "stream_name": "cam"}
    clients = {
        # The default: long-polling first, then the upgrade to WebSocket.
        "default": ({"query": query}, "websocket"),
        "websocket": ({"query": query, "transports": ["websocket"]}, "websocket"),
        # Cookies sent and Access-Control-Allow-Credentials required by the browser.
        "credentials": (
            {"query": query, "transports": ["polling"], "withCredentials": True},
            "polling",
        ),
        # A header makes every polling request preflighted (answered by the CORS middleware).
        "header": (
            {
                "query": {"stream_name": "cam"},
                "transports": ["polling"],
                "extraHeaders": {"Authorization": f"Bearer {VIEWER}"},
            },
            "polling",
        ),
    }
    pages = {}
    for name, (options, _) in clients.items():
        pages[name] = open_page(browser, listed + "/index.html")
        connect(pages[name][0], srv, options)
    # This server's own origin (the dashboard's) is not in the list and still works.
    own, own_seen = open_page(browser, srv.url + "/health")
    own.add_script_tag(content=CLIENT.read_text() + ";\n" + _page_script())
    connect(own, srv, {"query": query})
    pages["same origin"] = (own, own_seen)

    for name, (page, seen) in pages.items():
        page.wait_for_function("() => window.received.length >= 3", timeout=20000)
        state = page.evaluate(
            "() => ({received: window.received, errors: window.errors, joined: window.joined,"
            " transport: window.transport, origin: location.origin})"
        )
        assert state["errors"] == [], (name, state["errors"])
        assert state["joined"] == {"success": True, "room": "cam"}, name
        event = state["received"][-1]
        assert event["stream_name"] == "cam" and EMOTION_KEYS <= set(event["result"]), name
        if name in clients:
            assert state["transport"] == clients[name][1], name
        if name == "same origin":
            continue  # same-origin requests need no CORS headers
        # One Access-Control-Allow-Origin, the page's, on every polling response (a repeated
        # one would fail in the browser too); WebSocket handshakes are not CORS responses.
        polls = [allow_origin(headers) for headers in seen]
        assert all(values == [state["origin"]] for values in polls), (name, polls)
        assert polls or name == "websocket", name

    # The preflight the browser made for the "header" client, made again to look at it.
    with httpx.Client(base_url=srv.url) as c:
        pre = c.options(
            "/socket.io/?EIO=4&transport=polling",
            headers={
                "Origin": listed,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert pre.status_code == 200
        assert pre.headers.get_list("access-control-allow-origin") == [listed]
        simple = c.get(
            "/socket.io/", params={"EIO": "4", "transport": "polling", "token": VIEWER},
            headers={"Origin": listed},
        )  # fmt: skip
        assert simple.status_code == 200
        assert simple.headers.get_list("access-control-allow-origin") == [listed]


def _page_script() -> str:
    return PAGE.split("<script>", 1)[1].split("</script>", 1)[0]


@pytest.mark.browser
def test_socketio_from_an_unlisted_origin_is_refused(server, site, browser) -> None:
    listed, unlisted = site(), site()
    srv = monitored(server, listed)
    query = {"token": VIEWER, "stream_name": "cam"}
    refused = {}
    for name, options in {
        "default": {"query": query},
        "websocket": {"query": query, "transports": ["websocket"]},
    }.items():
        refused[name] = open_page(browser, unlisted + "/index.html")[0]
        connect(refused[name], srv, options)
    # A listed origin is no way around the token.
    tokenless, _ = open_page(browser, listed + "/index.html")
    connect(tokenless, srv, {"query": {"stream_name": "cam"}})
    # ... and with it, events flow meanwhile: the refused pages had something to miss.
    control, _ = open_page(browser, listed + "/index.html")
    connect(control, srv, {"query": query})
    control.wait_for_function("() => window.received.length >= 5", timeout=20000)

    for name, page in [*refused.items(), ("no token", tokenless)]:
        page.wait_for_function("() => window.errors.length > 0", timeout=10000)
        state = page.evaluate(
            "() => ({received: window.received.length, joined: window.joined,"
            " connected: window.socket.connected})"
        )
        assert state == {"received": 0, "joined": None, "connected": False}, name
    with httpx.Client(base_url=srv.url) as c:
        r = c.get(
            "/socket.io/", params={"EIO": "4", "transport": "polling", "token": VIEWER},
            headers={"Origin": unlisted},
        )  # fmt: skip
        assert r.status_code == 400 and "access-control-allow-origin" not in r.headers


@pytest.mark.browser
def test_ws_video_from_a_listed_origin_only(server, site, browser) -> None:
    listed, unlisted = site(), site()
    srv = monitored(server, listed)
    url = f"ws://127.0.0.1:{srv.port}/ws/video?token={API}"
    ok, _ = open_page(browser, listed + "/index.html")
    ok.evaluate("(url) => window.openVideo(url)", url)
    ok.wait_for_function("() => window.video.messages.length > 0", timeout=20000)
    ready = ok.evaluate("() => window.video.messages[0]")
    assert ready["type"] == "ready" and ready["session_id"]

    bad, _ = open_page(browser, unlisted + "/index.html")
    bad.evaluate("(url) => window.openVideo(url)", url)
    bad.wait_for_function("() => window.video.closed !== null", timeout=10000)
    video = bad.evaluate("() => window.video")
    assert video["error"] and video["messages"] == [] and video["closed"] == 1006


def test_socketio_same_origin_only_when_the_list_is_empty(server) -> None:
    srv = server()
    handshake = {"EIO": "4", "transport": "polling"}
    with httpx.Client(base_url=srv.url) as c:
        own = c.get("/socket.io/", params=handshake, headers={"Origin": srv.url})
        assert own.status_code == 200
        other = c.get("/socket.io/", params=handshake, headers={"Origin": "http://exam.example"})
        assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
        assert c.get("/socket.io/", params=handshake).status_code == 200  # programs: no Origin
