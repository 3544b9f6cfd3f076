"""The documentation: the configuration reference is generated from the models and current,
docs/api.md names every route the app serves, and /docs and /redoc work with no internet."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from vlm_monitor.testing import chromium

API = "api-token-0123456789"


def _offline_page(browser, outside: list[str], errors: list[str]):
    """A page that can reach 127.0.0.1 only, as on a camera network without internet: every
    other request is aborted and recorded in ``outside``, console errors in ``errors``."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})

    def route(r) -> None:
        if urlsplit(r.request.url).hostname == "127.0.0.1":
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort("internetdisconnected")

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    return page


@pytest.mark.browser
def test_docs_and_redoc_render_offline_with_the_token(server) -> None:
    srv = server({"server": {"api_token": API}})
    with httpx.Client(base_url=srv.url) as c:
        assert c.get("/docs").status_code == 401  # the pages stay control-access
        assert c.get("/redoc").status_code == 401
        assert c.get("/openapi.json").status_code == 401
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
            assert c.get(f"/docs/assets/{asset}").status_code == 200, asset  # open, like /app.js
        assert c.get("/docs-token.js").status_code == 200

    outside: list[str] = []
    errors: list[str] = []
    with chromium() as browser:
        page = _offline_page(browser, outside, errors)
        page.goto(f"{srv.url}/docs?token={API}")
        page.locator(".opblock").first.wait_for(timeout=20000)
        operations = page.locator(".opblock-summary-path").all_inner_texts()
        assert "/api/streams" in [op.replace("\u200b", "") for op in operations]
        assert len(operations) > 40

        # "Try it out" sends the page's token too.
        block = page.locator("[id$='-status_api_status_get']")
        block.locator(".opblock-summary").click()
        block.locator("button.try-out__btn").click()
        block.locator("button.execute").click()
        status = block.locator(".live-responses-table tbody .response-col_status")
        status.first.wait_for()
        assert status.first.inner_text().strip() == "200"

        page.goto(f"{srv.url}/redoc?token={API}")
        page.locator("[data-section-id^='operation/']").first.wait_for(timeout=20000)
        assert page.get_by_text("/api/streams/{stream_id}/mjpeg").count() > 0
    assert outside == []
    # The one thing the pages would fetch from elsewhere, ReDoc's Redocly logo, is stopped by
    # their Content-Security-Policy before any request is made.
    blocked = [e for e in errors if "violates the following Content Security Policy" in e]
    assert errors == blocked and all("cdn.redoc.ly" in e for e in blocked), errors
