"""The dashboard's events: a real headless Chromium, a real backend and test camera."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlm_monitor.testing import chromium

pytestmark = pytest.mark.browser


@pytest.fixture
def page(tmp_path: Path):
    with chromium() as browser:
        yield browser.new_page(viewport={"width": 1280, "height": 900})


def test_dashboard_lists_events_live_with_snapshot_search_and_ack(page, camera, server) -> None:
    cam = camera(fps=10, size="320x240")
    srv = server(
        {
            "events": {"idle_close_s": 1, "preroll_s": 1, "postroll_s": 1},
            "streams": [{"id": "cam", "url": cam.url, "analyzers": [{"name": "motion", "fps": 5}]}],
        }
    )
    page.goto(srv.url + "/")
    item = page.locator("#event-list li.event[data-kind=motion]").first
    item.wait_for(timeout=30000)  # arrives over /ws/events while the page is open
    page.wait_for_function(
        "() => document.querySelector('li.event[data-kind=motion] img.ev-snapshot')"
        "?.naturalWidth === 320",
        timeout=15000,
    )
    page.wait_for_function(
        "() => !document.querySelector('li.event[data-kind=motion] a.ev-clip').hidden",
        timeout=15000,
    )
    assert "Motion · cam" in item.locator(".ev-title").inner_text()
    event_id = item.get_attribute("data-event")
    item.locator("button.ack").click()
    page.wait_for_function(
        f"() => document.querySelector('li[data-event=\"{event_id}\"]')"
        ".dataset.acknowledged === 'true'",
        timeout=5000,
    )
    with srv.client() as c:
        assert c.get(f"/api/events/{event_id}").json()["acknowledged"] is True
    page.fill("#event-q", "nothingmatchesthis")
    page.click("#event-search-go")
    page.wait_for_function(
        "() => document.querySelectorAll('#event-list li').length === 0", timeout=5000
    )
    page.fill("#event-q", "motion")
    page.press("#event-q", "Enter")
    page.wait_for_function(
        f"() => !!document.querySelector('li[data-event=\"{event_id}\"]')", timeout=5000
    )
