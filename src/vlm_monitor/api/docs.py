"""The API's own documentation, ``/docs`` (Swagger UI) and ``/redoc``, with every asset served
by this server: FastAPI's default pages load them from a CDN, and a camera network usually
has no internet, which left ``/docs`` a blank page.

The bundles come from the ``fastapi-offline`` package's data (Swagger UI: Apache-2.0, ReDoc:
MIT); only its files are used, not its app factory, so the guard and routes stay ours. The
assets are public code and open like the dashboard's files; the pages themselves and
``/openapi.json`` need the API token (the guard's control level).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

ASSETS_URL = "/docs/assets"
ASSETS_DIR = Path(str(resources.files("fastapi_offline") / "static"))
OPENAPI_URL = "/openapi.json"
# A page reached with ?token= must send that token on its own requests (the spec, "Try it
# out"), which are fetches: this script, in web/, adds it as a header.
TOKEN_SCRIPT = '<script src="/docs-token.js"></script>\n</head>'
TITLE = "vlm-monitor API"
# Nothing on these pages may leave the server, even where there is internet: ReDoc's sidebar
# loads Redocly's logo from their CDN. Swagger UI starts from an inline script, both bundles
# inline styles, compile JSON schemas with new Function (ajv) and ReDoc searches in a blob:
# worker.
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
    "worker-src 'self' blob:; connect-src 'self'"
)

router = APIRouter()


def asset_paths() -> list[str]:
    """URL paths of the bundled assets, for the guard's list of open static files."""
    return [f"{ASSETS_URL}/{p.name}" for p in sorted(ASSETS_DIR.iterdir()) if p.is_file()]


def _with_token_script(page: HTMLResponse) -> HTMLResponse:
    html = bytes(page.body).decode()
    if "</head>" not in html:  # FastAPI changed its template: fail loudly, not silently
        raise RuntimeError("FastAPI's docs page has no </head> to load docs-token.js before")
    return HTMLResponse(
        html.replace("</head>", TOKEN_SCRIPT, 1), headers={"Content-Security-Policy": CSP}
    )


@router.get("/docs", include_in_schema=False)
async def swagger_ui() -> HTMLResponse:
    return _with_token_script(
        get_swagger_ui_html(
            openapi_url=OPENAPI_URL,
            title=f"{TITLE} - Swagger UI",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
            # The default validator badge is an image from validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )
    )


@router.get("/redoc", include_in_schema=False)
async def redoc() -> HTMLResponse:
    return _with_token_script(
        get_redoc_html(
            openapi_url=OPENAPI_URL,
            title=f"{TITLE} - ReDoc",
            redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
    )
