"""POST /api/streams/{id}/ask against a fake OpenAI-protocol VLM."""

from __future__ import annotations

import base64
import time

import cv2
import numpy as np
import pytest

from fake_vlm import OPENAI_PATH, FakeVlm
from vlm_monitor.testing import chromium, wait_until

CAMERA = "synthetic://?fps=15&size=640x360"


def test_ask_a_live_camera(server) -> None:
    fake = FakeVlm(answer="Yes: a ball is moving from left to right.")
    try:
        srv = server(
            {
                "vlm": {
                    "providers": [
                        {"name": "offline", "kind": "local"},
                        {"name": "qwen", "kind": "openai", "base_url": fake.url + "/v1",
                         "model": "qwen-vl-max"},
                    ]
                },
                "streams": [{"id": "cam", "url": CAMERA}],
            }
        )  # fmt: skip
        with srv.client() as c:
            wait_until(lambda: c.get("/api/streams/cam").json()["state"] == "live", 20, what="live")
            body = {"question": "Is something moving?", "window_s": 10}
            first = c.post("/api/streams/cam/ask", json=body)
            assert first.status_code == 200, first.text
            doc = first.json()
            assert doc["answer"] == fake.answer and doc["provider"] == "qwen"  # not `local`
            assert doc["frames"] >= 1 and doc["latency_s"] > 0
            time.sleep(3.5)  # the history keeps a frame a second from the first question on
            again = c.post("/api/streams/cam/ask", json=body).json()
            assert again["frames"] >= 3
            req = fake.requests[-1]
            assert req["path"] == OPENAI_PATH
            content = req["json"]["messages"][0]["content"]
            assert "Question: Is something moving?" in content[0]["text"]
            images = [p for p in content if p["type"] == "image_url"]
            assert len(images) == again["frames"]
            raw = base64.b64decode(images[0]["image_url"]["url"].split(",", 1)[1])
            img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
            assert img.shape[:2] == (360, 640)
            assert "response_format" not in req["json"]

            assert c.post("/api/streams/nope/ask", json=body).status_code == 404
            bad = c.post("/api/streams/cam/ask", json={"question": "", "window_s": 0})
            assert bad.status_code == 422
            fake.behaviours.extend(["500"] * 3)
            failed = c.post("/api/streams/cam/ask", json=body)
            assert failed.status_code == 502 and "HTTP 500" in failed.json()["error"]
    finally:
        fake.close()


def test_ask_with_only_the_local_provider_names_the_fix(server) -> None:
    srv = server(
        {
            "vlm": {"providers": [{"name": "offline", "kind": "local"}]},
            "streams": [{"id": "cam", "url": CAMERA}],
        }
    )
    with srv.client() as c:
        r = c.post("/api/streams/cam/ask", json={"question": "Anyone there?"})
        assert r.status_code == 409
        detail = r.json()["error"]
        assert "local" in detail and "openai" in detail and "vlm.providers" in detail


@pytest.mark.browser
def test_dashboard_ask_box_shows_the_answer_and_the_fix(server, tmp_path) -> None:
    fake = FakeVlm(answer="A red ball, moving right.")
    try:
        answering = server(
            {
                "vlm": {"providers": [{"name": "qwen", "kind": "openai",
                                       "base_url": fake.url + "/v1", "model": "qwen-vl-max"}]},
                "streams": [{"id": "cam", "url": CAMERA}],
            }
        )  # fmt: skip
        offline = server(
            {
                "vlm": {"providers": [{"name": "offline", "kind": "local"}]},
                "streams": [{"id": "cam", "url": CAMERA}],
            }
        )
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(answering.url + "/")
            box = page.locator("article[data-stream=cam] .ask")
            page.wait_for_function(
                "() => document.querySelector('article[data-stream=cam]')?.dataset.state"
                " === 'live'",
                timeout=20000,
            )
            box.locator(".ask-q").fill("What is moving?")
            box.locator(".ask-q").press("Enter")
            page.wait_for_function(
                "() => document.querySelector('article[data-stream=cam] .ask').dataset.state"
                " === 'answered'",
                timeout=20000,
            )
            assert box.locator(".ask-answer").inner_text() == fake.answer
            meta = box.locator(".ask-meta").inner_text()
            assert meta.startswith("qwen · ") and " frame" in meta and meta.endswith(" s")
            content = fake.requests[-1]["json"]["messages"][0]["content"]
            assert "Question: What is moving?" in content[0]["text"]
            page.screenshot(path=str(tmp_path / "ask.png"))

            page.goto(offline.url + "/")
            box.locator(".ask-q").fill("Anyone there?")
            box.locator(".ask-go").click()
            page.wait_for_function(
                "() => document.querySelector('article[data-stream=cam] .ask').dataset.state"
                " === 'error'",
                timeout=20000,
            )
            assert box.get_attribute("data-status") == "409"
            shown = box.locator(".ask-answer").inner_text()
            assert "local" in shown and "openai" in shown and "vlm.providers" in shown
    finally:
        fake.close()
