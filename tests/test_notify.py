"""Notifications through Apprise, received by a real local HTTP server (Apprise's json://):
filters, cooldown, retries with back-off, a dead target that blocks nothing, the snapshot
attached; and a server sending one for motion it saw."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from vlm_monitor.config import ConfigError, build_config
from vlm_monitor.config_events import NotifyTarget
from vlm_monitor.notify.apprise_notify import Notifier
from vlm_monitor.testing import free_port, wait_until


class Receiver:
    """Records every POST; answers ``fail_first`` of them with 500."""

    def __init__(self, fail_first: int = 0) -> None:
        self.posts: list[tuple[str, dict]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append((self.path, json.loads(body)))
                status = 500 if len(receiver.posts) <= receiver.fail_first else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=2)
    yield r
    r.close()


def event(i: int, kind: str = "motion", severity: str = "warning", stream: str = "cam") -> dict:
    return {
        "id": f"e{i}", "stream": stream, "kind": kind, "severity": severity, "title": "Motion",
        "summary": "a man climbs the fence", "state": "open", "started_at": 1_800_000_000.0,
        "snapshot_url": f"/api/events/e{i}/snapshot.jpg",
    }  # fmt: skip


def test_filters_cooldown_retries_and_a_dead_target(receiver: Receiver, tmp_path: Path) -> None:
    jpeg = b"\xff\xd8\xff\xe0fake-jpeg"
    (tmp_path / "e1.jpg").write_bytes(jpeg)
    good = NotifyTarget(
        url=receiver.url("a"), kinds=["motion", "alert"], cooldown_s=60, retry_s=0.05
    )
    dead = NotifyTarget(url=f"json://127.0.0.1:{free_port()}/x", attempts=2, retry_s=0.05)
    notifier = Notifier([good, dead], lambda event_id: tmp_path / f"{event_id}.jpg")

    async def scenario() -> None:
        notifier.start()
        await notifier.on_event("open", event(1), None)
        await notifier.on_event("open", event(2), None)  # same stream and kind: cooldown
        await notifier.on_event("open", event(3, severity="info"), None)  # below warning
        await notifier.on_event("open", event(4, kind="absent"), None)  # kind not wanted
        await notifier.on_event("close", event(1), None)  # only "open" by default
        await notifier.on_event("open", event(5, stream="other", kind="alert"), None)
        await asyncio.to_thread(
            wait_until,
            lambda: (
                notifier.status()[0].get("sent") == 2 and notifier.status()[1].get("failed") == 3
            ),
            30,
        )
        await notifier.stop()

    asyncio.run(scenario())
    good_status, dead_status = notifier.status()
    assert good_status["suppressed"] == 1 and good_status["retries"] == 2
    # Every kind, warning and up: events 1, 4 and 5, each tried twice, then given up.
    assert dead_status["failed"] == 3 and dead_status["retries"] == 3
    posts = [body for path, body in receiver.posts if path == "/a"]
    assert len(posts) == 4  # two refused with 500, then both delivered
    first = posts[2]
    assert first["title"] == "Motion on cam" and "climbs the fence" in first["message"]
    assert first["type"] == "warning"
    [attachment] = first["attachments"]
    assert base64.b64decode(attachment["base64"]) == jpeg
    assert posts[3]["title"] == "Motion on other" and not posts[3].get("attachments")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"url": "nonsense://x"}, r"notify\.0\.url"),
        ({"url": "json://h/p", "kinds": ["fire"]}, r"notify\.0\.kinds"),
        ({"url": "json://h/p", "min_severity": "loud"}, r"notify\.0\.min_severity"),
    ],
)
def test_bad_notify_entries_name_the_key(entry: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config({"notify": [entry]})


def test_server_notifies_motion_with_its_snapshot(server) -> None:
    r = Receiver()
    try:
        srv = server(
            {
                "notify": [{"url": r.url("hook"), "kinds": ["motion"], "min_severity": "info"}],
                "streams": [
                    {
                        "id": "cam",
                        "url": "synthetic://?fps=10&size=320x240",
                        "analyzers": [{"name": "motion", "fps": 5}],
                    }
                ],
            }
        )
        wait_until(lambda: r.posts, 30, what="a notification")
        path, body = r.posts[0]
        assert path == "/hook" and body["title"] == "Motion on cam"
        [attachment] = body["attachments"]
        assert base64.b64decode(attachment["base64"])[:2] == b"\xff\xd8"
        with srv.client() as c:  # the URL may hold a token
            assert c.get("/api/config").json()["notify"][0]["url"] == "***"
    finally:
        r.close()


def test_email_through_a_real_smtp_receiver(tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller

    received: list = []

    class Handler:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            received.append(envelope)
            return "250 OK"

    port = free_port()
    smtp = Controller(Handler(), hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        (tmp_path / "e1.jpg").write_bytes(b"\xff\xd8\xff\xe0fake-jpeg")
        url = f"mailto://127.0.0.1:{port}?mode=insecure&from=vlm@example.org&to=guard@example.org"
        notifier = Notifier([NotifyTarget(url=url)], lambda event_id: tmp_path / f"{event_id}.jpg")

        async def scenario() -> None:
            notifier.start()
            await notifier.on_event("open", event(1), None)
            await asyncio.to_thread(wait_until, lambda: received, 30, what="an e-mail")
            await notifier.stop()

        asyncio.run(scenario())
    finally:
        smtp.stop()
    [mail] = received
    assert mail.rcpt_tos == ["guard@example.org"]
    assert b"Motion on cam" in mail.content and b'filename="e1.jpg"' in mail.content
