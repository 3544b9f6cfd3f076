"""The proctor's wall in a real headless Chromium on a 1920x1080 screen: a room of synthetic
face streams, one seat empty and one with two people, against a real backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlm_monitor.testing import chromium

pytestmark = pytest.mark.browser

EMPTY, PAIR = "exam-A-user-03", "exam-B-user-03"


def room(seats: int) -> list[dict]:
    """``seats`` students in exams A and B, small and slow, attention once a second with
    short holds (looking away never counts: gaze on pictures this small is no test of it);
    the empty seat shows nobody, another two faces. The first few also read emotions, so
    tiles show the icon."""
    streams = []
    for i in range(seats):
        sid = f"exam-{'AB'[i % 2]}-user-{i // 2 + 1:02d}"
        scene = {EMPTY: "moving", PAIR: "two_faces"}.get(sid, "face")
        analyzers: list[dict] = [
            {
                "name": "attention",
                "fps": 1,
                "params": {"absent_s": 1, "multiple_s": 1, "away_s": 600},
            }
        ]
        if i < 4:
            analyzers.append({"name": "emotion", "fps": 0.5})
        streams.append(
            {
                "id": sid,
                "url": f"synthetic://?fps=2&size=320x240&scene={scene}",
                "analyzers": analyzers,
            }
        )
    return streams


def wait(page, script: str, timeout: float = 30000) -> None:
    page.wait_for_function(script, timeout=timeout)


def order(page) -> list[str]:
    return page.evaluate("() => document.querySelector('#grid').dataset.order.split(',')")


def focused(page) -> str | None:
    return page.evaluate("() => document.querySelector('.tile.focused')?.dataset.stream ?? null")


def run_wall(server, tmp_path: Path, seats: int, screen: dict[str, int]) -> None:
    srv = server({"streams": room(seats)})
    with chromium() as browser:
        page = browser.new_page(viewport=screen)
        # The dashboard links to it. With 32 live views it never finishes loading: six play,
        # the others wait for a connection (why the wall does not use one view per tile).
        page.goto(srv.url + "/", wait_until="domcontentloaded")
        page.click("a[href='/wall']")
        page.wait_for_url("**/wall")
        # Every tile gets pictures over the wall's one socket.
        wait(
            page,
            f"""() => {{
            const tiles = [...document.querySelectorAll('#grid .tile')];
            return tiles.length === {seats} && tiles.every(
                (t) => t.querySelector('img').naturalWidth >= 160 && t.dataset.pictures >= 2);
        }}""",
        )
        # The empty seat and the two-person seat come first, highlighted; nobody else is.
        wait(
            page,
            f"""() => {{
            const first = document.querySelector('#grid').dataset.order.split(',').slice(0, 2);
            return first.includes({json.dumps(EMPTY)}) && first.includes({json.dumps(PAIR)});
        }}""",
        )
        alerts = page.evaluate(
            "() => Object.fromEntries([...document.querySelectorAll('.tile[data-alert]')]"
            ".map((t) => [t.dataset.stream, t.dataset.alert]))"
        )
        assert alerts == {EMPTY: "warning", PAIR: "warning"}, alerts
        for sid, label, problem in (
            (EMPTY, "absent", "Absent"),
            (PAIR, "several faces", "Multiple"),
        ):
            tile = f'.tile[data-stream="{sid}"]'
            wait(
                page, f"() => document.querySelector('{tile} .attention').textContent === '{label}'"
            )
            assert problem in page.locator(f"{tile} .problem").inner_text()
        wait(page, "() => document.querySelector('.tile[data-emotion]:not([data-emotion=\"\"])')")
        # All of it on one screen, no scrolling.
        height = page.evaluate("() => document.documentElement.scrollHeight")
        assert height <= screen["height"], height
        shot = tmp_path / "wall.png"
        page.screenshot(path=str(shot))
        print(f"wall screenshot: {shot}")

        # The keyboard: the first arrow takes the first tile, then moves; Enter opens.
        ids = order(page)
        page.keyboard.press("ArrowRight")
        assert focused(page) == ids[0]
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowDown")
        cols = page.evaluate(
            "() => getComputedStyle(document.querySelector('#grid'))"
            ".gridTemplateColumns.split(' ').length"
        )
        assert focused(page) == ids[1 + cols]
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("ArrowUp")
        assert focused(page) == ids[0]
        page.keyboard.press("Enter")
        detail = page.locator("#detail")
        detail.wait_for(state="visible")
        opened = focused(page)
        assert detail.locator(".d-name").inner_text() == opened
        wait(page, "() => document.querySelector('#detail .d-view').naturalWidth === 320")
        assert "session" in detail.locator(".d-session").inner_text()
        # The proctor's report of the session, from its stored attention results.
        wait(page, "() => document.querySelector('#detail .d-report .presence')")
        assert "observed" in detail.locator(".d-report .presence").inner_text()
        # The card's attention panel follows the pushes.
        wait(page, "() => document.querySelector('#detail .attention-state')?.textContent")
        wait(page, "() => document.querySelector('#detail .d-events li')")
        page.screenshot(path=str(tmp_path / "wall-detail.png"))
        page.keyboard.press("Escape")
        detail.wait_for(state="hidden")
        assert page.evaluate("() => document.activeElement.dataset.stream") == opened

        # Filter by exam: only that exam's seats remain.
        page.select_option("#exam", "B")
        wait(page, "() => document.querySelectorAll('#grid .tile:not([hidden])').length > 0")
        shown = page.evaluate(
            "() => [...document.querySelectorAll('#grid .tile:not([hidden])')]"
            ".map((t) => t.dataset.stream)"
        )
        assert len(shown) == seats // 2 and all(s.startswith("exam-B-") for s in shown), shown


def test_wall_of_32_students(server, tmp_path) -> None:
    # Small, slow streams keep 32 of them lean on two cores (about 15 s).
    run_wall(server, tmp_path, 32, {"width": 1920, "height": 1080})
