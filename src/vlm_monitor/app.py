"""The composition root: the one place that builds the backend from a Config."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from vlm_monitor import __version__
from vlm_monitor.api import (
    analysis,
    analysis_results,
    ask,
    docs,
    events,
    flows,
    incidents,
    internal,
    live,
    realtime,
    results,
    streams,
    system,
    wall,
    whip,
)
from vlm_monitor.api.guard import Guard
from vlm_monitor.config import Config
from vlm_monitor.services import Services
from vlm_monitor.types import (
    CapacityError,
    ConflictError,
    DomainError,
    InvalidError,
    LimitError,
    NotFoundError,
)

API_MODULES = (
    system,
    streams,
    ask,
    analysis,
    analysis_results,
    flows,
    live,
    internal,
    events,
    incidents,
    results,
    realtime,
    whip,
    wall,
    docs,
)


# The one place domain errors become HTTP statuses; routers let them through.
DOMAIN_STATUS: dict[type[DomainError], int] = {
    NotFoundError: 404,
    ConflictError: 409,
    InvalidError: 422,
    LimitError: 429,
    CapacityError: 503,
}


def domain_error_response(exc: DomainError) -> JSONResponse:
    """``{"error": message}`` (plus ``detail``, every problem, for an InvalidError that
    lists several) with the status of the error's kind."""
    status = next((code for kind, code in DOMAIN_STATUS.items() if isinstance(exc, kind)), 400)
    body: dict[str, Any] = {"error": str(exc)}
    if isinstance(exc, InvalidError) and exc.problems:
        body["detail"] = exc.problems
    return JSONResponse(body, status_code=status)


def _validation_messages(exc: RequestValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        out.append(f"{'.'.join(loc) or 'body'}: {msg}")
    return out


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's spec, with our 422 body ({"error", "detail": [messages]}) in place of its
    default, so clients (and the schema fuzzer) see what is really sent."""
    if app.openapi_schema is None:
        spec = get_openapi(title=app.title, version=app.version, routes=app.routes)
        spec.setdefault("components", {}).setdefault("schemas", {})["HTTPValidationError"] = {
            "title": "ValidationError",
            "type": "object",
            "properties": {
                "error": {"type": "string"},
                "detail": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["error"],
        }
        app.openapi_schema = spec
    return app.openapi_schema


def create_app(config: Config) -> FastAPI:
    services = Services(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await services.start()
        try:
            yield
        finally:
            await services.stop()

    # /docs and /redoc are served by api/docs.py, with assets from this server (no CDN).
    app = FastAPI(
        title="vlm-monitor",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.state.services = services
    app.state.metrics = system.metrics_registry(services)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        messages = _validation_messages(exc)
        return JSONResponse({"error": "; ".join(messages), "detail": messages}, status_code=422)

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # A dict detail is already a body (e.g. a flow's list of problems).
        body = exc.detail if isinstance(exc.detail, dict) else {"error": exc.detail}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    web = resources.files("vlm_monitor") / "web"
    pages = ["/", "/chat", "/publish", "/wall"]
    pages += [f"/{f.name}" for f in web.iterdir() if f.is_file()]
    pages += docs.asset_paths()
    app.add_middleware(
        Guard,
        config=config.server,
        static=pages,
        refused=services.refused,
        socketio_sessions=services.socketio.sessions,
    )
    if config.server.cors_origins:
        # Outside the guard: a CORS preflight carries no token and must still be answered.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.server.cors_origins,
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type"],
        )

    @app.exception_handler(DomainError)
    async def on_domain_error(request: Request, exc: DomainError) -> JSONResponse:
        return domain_error_response(exc)

    for module in API_MODULES:
        app.include_router(module.router)
    app.mount("/socket.io", services.socketio.asgi_app(), name="socket.io")
    app.mount(docs.ASSETS_URL, StaticFiles(directory=docs.ASSETS_DIR), name="docs-assets")
    app.mount("/", StaticFiles(directory=str(web), html=True), name="web")
    return app
