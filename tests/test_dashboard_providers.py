"""The dashboard's VLM provider panel in a real headless Chromium: spend, breaker and a
stream whose clips a budget stops."""

from __future__ import annotations

import pytest

from vlm_monitor.testing import chromium

pytestmark = pytest.mark.browser


def test_provider_panel_shows_spend_breaker_and_budget_skips(server) -> None:
    srv = server(
        {
            "vlm": {"providers": [{"name": "offline", "kind": "local"}]},
            "streams": [
                {"id": "demo", "url": "synthetic://?fps=10&size=320x180",
                 "clips": {"clip_seconds": 1, "frames_per_clip": 2, "min_free_mb": 0,
                           "budget": {"calls_per_minute": 1}}}
            ],
        }
    )  # fmt: skip
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(srv.url + "/")
        row = page.locator('#provider-list tr[data-provider="offline"]')
        row.wait_for(timeout=15000)
        assert row.locator(".circuit").inner_text() == "closed"
        page.wait_for_function(
            "() => /budget/.test(document.querySelector('#provider-list .skipped').textContent)",
            timeout=20000,
        )
        assert int(row.locator(".calls").inner_text()) >= 1
        # The reason shows while the budget holds; a call at the turn of the minute clears
        # it until the next clip is skipped, so one poll may fall between the two.
        page.wait_for_function(
            "() => /skipping clips/.test(document.querySelector('#budget-list').textContent)",
            timeout=20000,
        )
        budgets = page.locator("#budget-list").inner_text()
        assert "demo: skipping clips: stream demo (clips.budget): budget of 1 calls/min" in budgets
        assert page.locator("#providers .shared").inner_text() == "counted on this node"
