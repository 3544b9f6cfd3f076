"""The dashboard's events: a real headless Chromium, a real backend and test camera."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlm_monitor.testing import chromium, wait_until
from vlm_monitor.types import EVENT_KINDS

pytestmark = pytest.mark.browser


@pytest.fixture
def page(tmp_path: Path):
    with chromium() as browser:
        yield browser.new_page(viewport={"width": 1280, "height": 900})


def listed(page, selector: str = "") -> list[str]:
    """The streams of the events shown (those matching ``selector`` on the items)."""
    return page.eval_on_selector_all(
        f"#event-list li.event{selector}", "els => els.map(e => e.dataset.stream)"
    )


# True once each stream's card shows the count given for it.
BADGES = """want => Object.entries(want).every(([id, n]) =>
    document.querySelector(`article[data-stream="${id}"] .unacked`)?.dataset.count === n)"""


def test_dashboard_lists_events_live_with_snapshot_search_filter_badge_and_ack(
    page, camera, server
) -> None:
    cam = camera(fps=10, size="320x240")
    # The ball never stops: reported every 3 s, each report opens an event that closes idle.
    motion = [{"name": "motion", "fps": 5, "params": {"report_every_s": 3}}]
    srv = server(
        {
            "events": {"idle_close_s": 1, "preroll_s": 1, "postroll_s": 1},
            "streams": [
                {"id": "cam", "url": cam.url, "analyzers": motion},
                {"id": "yard", "url": cam.url, "analyzers": motion},
            ],
        }
    )
    page.goto(srv.url + "/")
    kinds = page.eval_on_selector_all("#event-kind option", "els => els.map(e => e.value)")
    assert kinds == ["", *EVENT_KINDS]  # the page offers exactly the server's kinds
    page.wait_for_selector("#event-stream option[value=cam]", state="attached", timeout=15000)
    page.select_option("#event-stream", "cam")
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
    with srv.client() as c:
        # The other stream's events happened too, live, and stayed out of the filtered list.
        wait_until(lambda: len(c.get("/api/events", params={"stream": "yard"}).json()) >= 2, 30)
        assert set(listed(page)) == {"cam"}
        # Quiet streams: no event opens any more, so the counts hold still.
        for sid in ("cam", "yard"):
            assert c.put(f"/api/streams/{sid}/analyzers", json={"analyzers": []}).is_success
        counts = wait_until(
            lambda: (
                (n := c.get("/api/events/counts").json())
                and all(n[s]["open"] == 0 for s in ("cam", "yard"))
                and n
            ),
            20,
            what="events closed",
        )
    before = counts["cam"]["unacknowledged"]
    shown = {"cam": str(before), "yard": str(counts["yard"]["unacknowledged"])}
    page.wait_for_function(BADGES, arg=shown, timeout=10000)
    assert shown["yard"] != "0"
    page.click(f'li[data-event="{event_id}"] button.ack')  # `item` is the newest by now
    page.wait_for_function(
        f"() => document.querySelector('li[data-event=\"{event_id}\"]')"
        ".dataset.acknowledged === 'true'",
        timeout=5000,
    )
    # The badge goes down by the one acknowledged; the other stream's stays.
    page.wait_for_function(BADGES, arg={**shown, "cam": str(before - 1)}, timeout=5000)
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
    # Filter by kind: none of these happened; then the other stream's motion only.
    page.fill("#event-q", "")
    page.select_option("#event-kind", "stream_offline")
    page.wait_for_function(
        "() => document.querySelectorAll('#event-list li').length === 0", timeout=5000
    )
    page.select_option("#event-stream", "yard")
    page.select_option("#event-kind", "motion")
    page.wait_for_function(
        "() => document.querySelectorAll('#event-list li').length > 0", timeout=5000
    )
    assert set(listed(page)) == {"yard"} and listed(page, ":not([data-kind=motion])") == []
