"""The documentation: the configuration reference is generated from the models and current,
docs/api.md names every route the app serves, and /docs and /redoc work with no internet."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.routing import Mount, Route

from vlm_monitor import config_reference
from vlm_monitor.api.guard import access_of
from vlm_monitor.app import API_MODULES, create_app
from vlm_monitor.config import build_config
from vlm_monitor.testing import chromium

API = "api-token-0123456789"
DOCS = Path(__file__).resolve().parents[1] / "docs"
# "| `GET /api/streams` | viewer | ..." in docs/api.md
ROUTE_ROW = re.compile(r"^\| `(GET|POST|PUT|DELETE|WS) (/[^`]*)` \| ([a-z]+)", re.MULTILINE)


def test_the_configuration_reference_is_current() -> None:
    path = DOCS / "configuration.md"
    current = path.read_text() if path.exists() else ""
    if current != config_reference.render():
        pytest.fail(
            "docs/configuration.md is stale (the models in src/vlm_monitor/config.py changed): "
            f"regenerate it with `.venv/bin/{config_reference.COMMAND}` from the repository root"
        )


LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#+ (.+)$", re.MULTILINE)


def anchor(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation but - and _ dropped, spaces -."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.lower()).replace(" ", "-")


def prose(page: Path) -> str:
    """A page without its code blocks (whose # lines are comments, not headings)."""
    return re.sub(r"^```.*?^```", "", page.read_text(), flags=re.DOTALL | re.MULTILINE)


def test_links_between_the_docs_lead_somewhere() -> None:
    pages = [DOCS.parent / "README.md", *sorted(DOCS.glob("*.md"))]
    broken = []
    for page in pages:
        for target in LINK.findall(prose(page)):
            if re.match(r"[a-z]+:", target):
                continue  # http(s)://, mailto: ...
            path, _, fragment = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif fragment and file.suffix == ".md":
                if fragment not in {anchor(h) for h in HEADING.findall(prose(file))}:
                    broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken


def app_routes(tmp_path: Path) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, from the app itself ("WS" for WebSockets)."""
    app = create_app(build_config({"server": {"data_dir": str(tmp_path)}}))
    found = []
    for route in [r for m in API_MODULES for r in m.router.routes] + list(app.routes):
        if isinstance(route, APIWebSocketRoute):
            found.append(("WS", route.path))
        elif isinstance(route, APIRoute | Route):
            found += [(m, route.path) for m in sorted((route.methods or set()) - {"HEAD"})]
        elif isinstance(route, Mount) and route.path == "/socket.io":
            found.append(("GET", "/socket.io/"))
    return sorted(set(found))


def test_api_md_lists_every_route_with_its_access(tmp_path) -> None:
    text = (DOCS / "api.md").read_text()
    rows = {(m, p): access for m, p, access in ROUTE_ROW.findall(text)}
    routes = app_routes(tmp_path)
    assert len(routes) > 50
    missing = [f"{m} {p}" for m, p in routes if (m, p) not in rows]
    assert not missing, f"routes the app serves that docs/api.md does not list: {missing}"

    # The access each row states is the guard's (a token, open pages: see security.md).
    static = {"/", "/chat", "/publish", "/wall"}
    for (method, path), stated in rows.items():
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        actual = access_of("GET" if method == "WS" else method, concrete, static, False)
        assert stated == actual.name.lower(), f"docs/api.md: {method} {path} is {actual.name}"


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
