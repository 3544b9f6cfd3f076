"""The dashboard in a real headless Chromium, against a real backend and test camera."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlm_monitor.camera import strip
from vlm_monitor.testing import CHROMIUM_MEDIA_FLAGS, chromium

pytestmark = pytest.mark.browser


@pytest.fixture
def page(tmp_path: Path):
    with chromium() as browser:
        yield browser.new_page(viewport={"width": 1280, "height": 900})


def test_dashboard_shows_live_stream_and_manages_streams(page, camera, server, tmp_path) -> None:
    cam = camera(size="1280x720", fps=15, single_client=True)
    srv = server(
        {
            "vlm": {"providers": [{"name": "offline", "kind": "local"}]},
            "streams": [
                {"id": "demo", "url": cam.url, "clips": {"clip_seconds": 2, "frames_per_clip": 4}}
            ],
        }
    )
    page.goto(srv.url + "/")
    card = page.locator('article[data-stream="demo"]')
    card.wait_for(timeout=15000)
    page.wait_for_function(
        "() => document.querySelector('article[data-stream=demo]').dataset.state === 'live'",
        timeout=20000,
    )
    # the <img> shows real decoded pixels of the camera
    page.wait_for_function(
        "() => document.querySelector('article[data-stream=demo] img.view').naturalWidth === 1280",
        timeout=20000,
    )
    assert card.locator(".state").inner_text() == "live"
    page.wait_for_function(
        "() => parseFloat(document.querySelector('article[data-stream=demo] .fps')"
        ".textContent) > 5",
        timeout=10000,
    )
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot))
    # the picture the browser got carries the camera's strip: it is the live camera
    jpeg = page.evaluate("""async () => {
        const img = document.querySelector('article[data-stream=demo] img.view');
        const c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        c.getContext('2d').drawImage(img, 0, 0);
        return c.toDataURL('image/png');
    }""")
    import base64

    import cv2
    import numpy as np

    png = base64.b64decode(jpeg.split(",", 1)[1])
    pixels = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert strip.read(pixels) is not None

    # analysis results appear under the stream as they are produced
    first = card.locator(".result-list li").first
    first.wait_for(timeout=30000)
    assert "motion" in first.locator(".text").inner_text()
    assert first.locator("a").get_attribute("href").endswith("/clip")
    page.screenshot(path=str(shot))

    # add a stream through the form, see it go live, then remove it
    page.fill("input[name=id]", "synth")
    page.fill("input[name=url]", "synthetic://?fps=10&size=640x360")
    page.click("button[type=submit]")
    page.wait_for_function(
        "() => document.querySelector('article[data-stream=synth]')?.dataset.state === 'live'",
        timeout=20000,
    )
    page.fill("input[name=id]", "bad")
    page.fill("input[name=url]", "htp://nope")
    page.click("button[type=submit]")
    page.wait_for_function(
        "() => document.querySelector('#form-error').textContent.includes('htp')", timeout=5000
    )
    page.locator('article[data-stream="synth"] .remove').click()
    page.wait_for_function(
        "() => !document.querySelector('article[data-stream=synth]')", timeout=5000
    )
    with srv.client() as c:
        assert [s["id"] for s in c.get("/api/streams").json()] == ["demo"]
    assert cam.connections() == 1


def test_dashboard_shows_emotion_and_heart_rate_live(page, server, tmp_path) -> None:
    srv = server(
        {
            "streams": [
                {
                    "id": "exam-1-user-2",
                    "url": "synthetic://?fps=15&size=640x360&scene=face&bpm=84",
                    "analyzers": ["emotion", {"name": "heart_rate", "params": {"window_s": 6}}],
                }
            ]
        }
    )
    page.goto(srv.url + "/")
    sel = "article[data-stream='exam-1-user-2']"
    page.locator(sel).wait_for(timeout=15000)
    # The emotion bars move with live results; the happy bar leads.
    page.wait_for_function(
        f"""() => {{
            const row = document.querySelector("{sel} .bar-row[data-emotion=happy] i");
            return row && parseFloat(row.style.width) > 80;
        }}""",
        timeout=20000,
    )
    assert page.locator(f"{sel} .dominant").inner_text().startswith("happy")
    # The heart-rate readout settles on the face's rate, and the plot has been drawn.
    page.wait_for_function(
        f"""() => {{
            const bpm = parseFloat(document.querySelector("{sel} .bpm").dataset.bpm);
            return Math.abs(bpm - 84) <= 3;
        }}""",
        timeout=30000,
    )
    drawn = page.evaluate(
        f"""() => {{
            const c = document.querySelector("{sel} .heart-plot");
            const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            let red = 0;
            for (let i = 0; i < px.length; i += 4) if (px[i] > 150 && px[i + 1] < 80) red++;
            return red;
        }}"""
    )
    assert drawn >= 12, "the heart-rate reading is on the canvas"
    assert "session 1:2 (auto)" in page.locator(f"{sel} .session").inner_text()
    page.screenshot(path=str(tmp_path / "analysis.png"))
    # Toggling an analyzer in the page changes what runs on the server.
    page.locator(f"{sel} .analyzer-toggles input[value=motion]").check()
    with srv.client() as c:
        from vlm_monitor.testing import wait_until

        wait_until(
            lambda: "motion" in c.get("/api/streams/exam-1-user-2").json()["analyzers"],
            10,
            what="motion enabled from the page",
        )


def test_dashboard_shows_flows_and_a_live_run(page, server, tmp_path) -> None:
    srv = server()
    diamond = {
        "id": "diamond",
        "nodes": [
            {"id": "a", "type": "wait", "params": {"seconds": 0}},
            {"id": "b", "type": "wait", "params": {"seconds": 1}},
            {"id": "c", "type": "wait", "params": {"seconds": 1}},
            {"id": "d", "type": "wait", "params": {"seconds": 0}},
        ],
        "edges": [["a", "b"], ["a", "c"], ["b", "d"], ["c", "d"]],
    }
    with srv.client() as c:
        assert c.post("/api/flows", json=diamond).status_code == 201
    page.goto(srv.url + "/")
    row = page.locator("tr[data-flow=diamond]")
    row.wait_for(timeout=15000)
    row.locator(".start").click()
    page.wait_for_function(
        "() => document.querySelector('tr[data-flow=diamond]').dataset.state === 'running'",
        timeout=10000,
    )
    row.locator(".run").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#run-view tr[data-node]')]"
        ".map(r => r.dataset.status).join() === 'succeeded,succeeded,succeeded,succeeded'",
        timeout=15000,
    )
    # Topological order, and b and c side by side on the timeline.
    nodes = page.eval_on_selector_all(
        "#run-view tr[data-node]", "rows => rows.map(r => r.dataset.node)"
    )
    assert nodes[0] == "a" and nodes[-1] == "d" and set(nodes[1:3]) == {"b", "c"}
    spans = page.eval_on_selector_all(
        "#run-view tr[data-node] .gantt i",
        "bars => bars.map(b => [parseFloat(b.dataset.start), parseFloat(b.dataset.end)])",
    )
    (_, _), (b0, b1), (c0, c1), _ = spans
    assert max(b0, c0) < min(b1, c1), f"b {b0}-{b1} and c {c0}-{c1} overlap in time"
    page.screenshot(path=str(tmp_path / "flows.png"), full_page=True)
    row.locator(".stop").click()
    page.wait_for_function(
        "() => document.querySelector('tr[data-flow=diamond]').dataset.state === 'stopped'",
        timeout=10000,
    )


def test_dashboard_switches_to_webrtc_and_shows_latency(server, tmp_path) -> None:
    srv = server({"streams": [{"id": "cam", "url": "synthetic://?fps=15&size=640x360"}]})
    with chromium(*CHROMIUM_MEDIA_FLAGS) as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(srv.url + "/")
        sel = "article[data-stream=cam]"
        page.locator(sel).wait_for(timeout=15000)
        # MJPEG first: the latency is read from the strip in the shown picture.
        page.wait_for_function(
            f"() => parseFloat(document.querySelector('{sel} .view-latency').dataset.ms) >= 0",
            timeout=15000,
        )
        page.locator(f"{sel} .rtc-toggle").click()
        page.wait_for_function(
            f"""() => {{
                const card = document.querySelector('{sel}');
                const v = card.querySelector('.rtc-view');
                return card.dataset.view === 'webrtc' && v.videoWidth === 640 && !v.paused;
            }}""",
            timeout=20000,
        )
        assert page.inner_text(f"{sel} .view-kind") == "WebRTC"
        page.wait_for_timeout(1500)
        ms = float(page.get_attribute(f"{sel} .view-latency", "data-ms"))
        assert 0 <= ms < 1000, ms
        with srv.client() as c:
            assert c.get("/api/streams/cam").json()["webrtc_view"]["viewers"] == 1
        page.screenshot(path=str(tmp_path / "webrtc.png"))
        page.locator(f"{sel} .rtc-toggle").click()  # back to MJPEG
        assert page.get_attribute(sel, "data-view") == "mjpeg"


def test_dashboard_asks_for_the_token_keeps_it_and_a_viewer_cannot_change(
    page, server, tmp_path
) -> None:
    srv = server(
        {
            "server": {"api_token": "api-token-0123456789", "viewer_token": "view-0123456789"},
            "streams": [{"id": "demo", "url": "synthetic://?fps=10&size=640x360"}],
        }
    )
    page.goto(srv.url + "/")
    page.locator("#token-dialog").wait_for(timeout=15000)
    page.fill("#token-dialog input[name=token]", "view-0123456789")
    page.click("#token-dialog button")
    page.locator('article[data-stream="demo"]').wait_for(timeout=15000)
    # The live view (an <img>, ?token=) and the event socket work with the viewer token.
    page.wait_for_function(
        "() => document.querySelector('article[data-stream=demo] img.view').naturalWidth === 640",
        timeout=20000,
    )
    page.wait_for_function(
        "() => document.querySelector('article[data-stream=demo]').dataset.state === 'live'",
        timeout=20000,
    )
    # Kept across a reload: no second question.
    page.reload()
    page.locator('article[data-stream="demo"]').wait_for(timeout=15000)
    assert page.locator("#token-dialog").count() == 0
    # The viewer token is read-only.
    status = page.evaluate(
        """async () => (await fetch('/api/streams', {method: 'POST',
             headers: {'Content-Type': 'application/json'},
             body: JSON.stringify({id: 'x', url: 'synthetic://'})})).status"""
    )
    assert status == 403
    with srv.client("api-token-0123456789") as c:
        assert [s["id"] for s in c.get("/api/streams").json()] == ["demo"]


def test_many_streams_share_one_picture_socket_and_the_page_stays_usable(page, server) -> None:
    """Six MJPEG views would hold all six connections a browser opens to the server: past
    four streams the cards' pictures come over one socket, every card gets its pictures, and
    the page's own requests (adding a stream) still go through."""
    streams = [
        {"id": f"cam{i}", "url": f"synthetic://?fps=5&size=320x{180 + 2 * i}"} for i in range(6)
    ]
    srv = server({"streams": streams})
    page.goto(srv.url + "/")
    for i in range(6):
        img = f"document.querySelector('article[data-stream=cam{i}] img.view')"
        page.wait_for_function(
            f"() => {img}?.dataset.source === 'socket' && {img}.naturalHeight === {180 + 2 * i}",
            timeout=20000,
        )
    mjpeg = page.evaluate(
        "() => [...document.querySelectorAll('img.view')].filter((i) => i.src.includes('/mjpeg'))"
        ".length"
    )
    assert mjpeg == 0
    page.fill("input[name=id]", "late")
    page.fill("input[name=url]", "synthetic://?fps=5&size=320x200")
    page.click("button[type=submit]")
    page.wait_for_function(
        "() => document.querySelector('article[data-stream=late] img.view')?.naturalHeight === 200",
        timeout=20000,
    )
