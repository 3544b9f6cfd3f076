"""The dashboard's proctoring view in a real headless Chromium: attention badges per stream,
the proctor's report of the stream's session, and the "degraded" badge under overload."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlm_monitor.testing import chromium, wait_until

pytestmark = pytest.mark.browser

FACE = "synthetic://?fps=15&size=640x360&scene=face"
EMPTY = "synthetic://?fps=15&size=640x360&scene=moving"  # nobody in the picture


def card(sid: str) -> str:
    return f'article[data-stream="{sid}"]'


def test_attention_badges_report_and_overload_on_the_dashboard(server, tmp_path: Path) -> None:
    attention = {"name": "attention", "params": {"absent_s": 1}}
    srv = server(
        {
            "analysis": {"threads": 1, "overload": {"period_s": 0.5, "min_share": 0.5}},
            "streams": [
                {"id": "exam-1-user-1", "url": FACE, "analyzers": ["emotion", attention]},
                {"id": "exam-1-user-2", "url": EMPTY, "analyzers": [attention]},
            ],
        }
    )
    with chromium() as browser, srv.client() as http:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(srv.url + "/")
        present = page.locator(f"{card('exam-1-user-1')} .attention-state")
        present.wait_for(timeout=20000)
        page.wait_for_function(
            f"() => document.querySelector('{card('exam-1-user-1')} .attention-state')"
            ".textContent === 'present'",
            timeout=20000,
        )
        assert "ok" in (present.get_attribute("class") or "")
        empty = page.locator(f'{card("exam-1-user-2")} .incident[data-kind="absent"]')
        empty.wait_for(timeout=20000)
        assert empty.inner_text().startswith("absent")
        state = page.locator(f"{card('exam-1-user-2')} .attention-state")
        assert state.inner_text() == "absent" and "alarm" in (state.get_attribute("class") or "")

        # The report of the face stream's session (exam 1, student 1), once results are stored.
        wait_until(lambda: http.get("/api/sessions/1:1/summary").status_code == 200, 30)
        page.locator(f"{card('exam-1-user-1')} .report-toggle").click()
        presence = page.locator(f"{card('exam-1-user-1')} .report .presence")
        presence.wait_for(timeout=10000)
        assert presence.inner_text().startswith("Present")
        rows = page.locator(f"{card('exam-1-user-1')} .incident-table tbody tr")
        kinds = {rows.nth(i).get_attribute("data-kind") for i in range(rows.count())}
        assert kinds == {"absent", "multiple_faces", "looking_away"}

        # Overload: OCR at 20 fps on the one analyzer thread; every card says so.
        busy = {"analyzers": [attention, {"name": "ocr", "fps": 20}]}
        assert http.put("/api/streams/exam-1-user-2/analyzers", json=busy).status_code == 200
        for sid in ("exam-1-user-1", "exam-1-user-2"):
            badge = page.locator(f"{card(sid)} .badge.degraded")
            badge.wait_for(state="visible", timeout=30000)
            assert badge.inner_text().startswith("degraded")
            # One analyzer behind shows first as slow; overload once the machine is measured.
            page.wait_for_function(
                "(el) => /cannot keep up/.test(el.title)",
                arg=badge.element_handle(),
                timeout=30000,
            )
        page.screenshot(path=str(tmp_path / "dashboard-proctor.png"), full_page=True)
