"""The door of the server: one ASGI middleware in front of every route, mounted app and
WebSocket, so a route added later is protected without remembering to be.

Access levels, decided from the method and path alone:
- open: ``/health`` and the dashboard's static files (public code; the page asks for a token);
- viewer: read-only views (``GET /api/...``, live MJPEG, ``/ws/events``, the wall's
  ``/ws/wall``, Socket.IO, WHEP);
  the viewer token or the API token;
- publish: ``/whip/...`` checks its per-stream publish token itself;
- control: everything else (changes, ``/internal/...``, ``/api/config``, realtime chat,
  posted results, and ``/metrics`` unless ``metrics_public``); the API token only.

With no ``api_token`` configured, nothing is checked (the default bind is 127.0.0.1). Tokens
come from ``Authorization: Bearer`` or, for what browsers cannot give headers to (``<img>``,
WebSocket), a ``token`` query parameter; they are compared in constant time and never logged.

Limits enforced here: request body size (413), long-lived connections per client address
(MJPEG, WebSocket, Socket.IO: 429), Socket.IO sessions per client and in total (429), the
Origin of WebSocket handshakes and of changing requests (403 unless same host or in
``cors_origins``: a page on another site must not drive this server through a user's browser,
token or no token), and the Host header (400 unless in ``allowed_hosts``: DNS rebinding).
"""

from __future__ import annotations

import enum
import hmac
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from urllib.parse import parse_qs

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vlm_monitor.config import ServerConfig
from vlm_monitor.origins import origin_allowed

log = logging.getLogger("vlm_monitor.guard")


class Access(enum.Enum):
    OPEN = 0
    VIEWER = 1
    PUBLISH = 2
    CONTROL = 3


READ = {"GET", "HEAD"}
SAFE = READ | {"OPTIONS"}
LOG_EVERY_S = 10.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")
ANY_ADDRESS = ("0.0.0.0", "::", "")
# (client address) -> (Socket.IO sessions in total, sessions of that address)
SessionCount = Callable[[str], tuple[int, int]]
VIEWER_READ = re.compile(r"^/api/(?!config$).*$")
LONG_LIVED = re.compile(r"^/(api/streams/[^/]+/mjpeg|ws/.*|socket\.io/.*|internal/video/ws/.*)$")


def access_of(method: str, path: str, static: Iterable[str], metrics_public: bool) -> Access:
    if path in ("/health", "/health/ready") or (method in READ and path in static):
        return Access.OPEN
    if path == "/metrics" and method in READ:
        return Access.OPEN if metrics_public else Access.CONTROL
    if path.startswith("/whip/"):
        return Access.PUBLISH
    if path in ("/ws/events", "/ws/wall") or path.startswith(("/socket.io/", "/whep/")):
        return Access.VIEWER
    if method in READ and VIEWER_READ.match(path):
        return Access.VIEWER
    return Access.CONTROL


def bearer(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value."""
    scheme, _, token = authorization.partition(" ")
    return token if scheme.lower() == "bearer" and token else None


def token_of(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            token = bearer(value.decode("latin-1"))
            if token is not None:
                return token.strip()
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return str(values[-1]) if values else None


def allowed_hosts(config: ServerConfig) -> frozenset[str] | None:
    """The Host names served; None = any."""
    if config.allowed_hosts is not None:
        hosts = frozenset(h.lower() for h in config.allowed_hosts)
        return None if "*" in hosts else hosts
    if config.host in ANY_ADDRESS:
        return None  # every name this machine has is meant; the token is the protection
    return frozenset({config.host.lower(), *LOOPBACK})


def host_name(value: str) -> str:
    """``example.com:8080`` -> ``example.com``; ``[::1]:8080`` -> ``::1``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    return value.rpartition(":")[0] if value.count(":") == 1 else value


def same(token: str | None, expected: str | None) -> bool:
    if not token or not expected:
        return False
    return hmac.compare_digest(token.encode(), expected.encode())


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        config: ServerConfig,
        static: Iterable[str],
        refused: Counter[str],
        socketio_sessions: SessionCount | None = None,
    ) -> None:
        """``refused``: status code -> requests refused, shared with /metrics."""
        self.app, self.config = app, config
        self.static = frozenset(static)
        self.connections: Counter[str] = Counter()  # long-lived connections per client host
        self.refused = refused
        self.hosts = allowed_hosts(config)
        self.socketio_sessions = socketio_sessions
        self._logged: dict[tuple[str, int], tuple[float, int]] = {}  # last line, refused since

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        method = scope.get("method", "GET") if scope["type"] == "http" else "GET"
        client = (scope.get("client") or ("?", 0))[0]
        refusal = (
            self._check_host(scope)
            or self._check_auth(scope, method, path)
            or self._check_origin(scope, method)
            or self._check_sessions(scope, path, client)
        )
        if refusal is not None:
            await self._refuse(scope, send, *refusal)
            return
        long_lived = LONG_LIVED.match(path) is not None
        if long_lived and self.connections[client] >= self.config.max_connections_per_client:
            await self._refuse(
                scope, send, 429,
                f"more than {self.config.max_connections_per_client} open connections "
                "from this address",
            )  # fmt: skip
            return
        if scope["type"] == "http":
            length = _content_length(scope)
            if length is not None and length > self.config.max_body_bytes:
                await self._refuse(scope, send, 413, self._too_large())
                return
            receive = self._capped(receive)
        if not long_lived:
            await self.app(scope, receive, send)
            return
        self.connections[client] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.connections[client] -= 1
            if self.connections[client] <= 0:
                del self.connections[client]

    def _check_auth(self, scope: Scope, method: str, path: str) -> tuple[int, str] | None:
        api = self.config.api_token
        if not api:
            return None
        access = access_of(method, path, self.static, self.config.metrics_public)
        if access in (Access.OPEN, Access.PUBLISH):
            return None
        token = token_of(scope)
        if same(token, api):
            return None
        if access is Access.VIEWER and same(token, self.config.viewer_token):
            return None
        if token is None:
            return 401, "a token is required: Authorization: Bearer <token> (or ?token=)"
        if access is Access.CONTROL and same(token, self.config.viewer_token):
            return 403, "the viewer token is read-only; this needs the API token"
        return 401, "wrong token"

    def _check_host(self, scope: Scope) -> tuple[int, str] | None:
        # Probes address the server by IP whatever its names; the health routes tell little.
        if self.hosts is None or scope["path"] in ("/health", "/health/ready"):
            return None
        host = dict(scope.get("headers", ())).get(b"host")
        if host is None:
            return None  # HTTP/1.0 without Host: nothing a rebinding page could send
        name = host_name(host.decode("latin-1"))
        if name in self.hosts:
            return None
        return 400, f"host {name!r} is not served here (server.allowed_hosts)"

    def _check_origin(self, scope: Scope, method: str) -> tuple[int, str] | None:
        """Browsers send Origin on WebSocket handshakes but apply no same-origin rule to
        them, and send cross-site "simple" POSTs without asking (no preflight): a page on
        another site must not drive this server through a user's browser."""
        if scope["type"] == "http" and method in SAFE:
            return None
        headers = dict(scope.get("headers", ()))
        origin = headers.get(b"origin")
        if origin is None:
            if headers.get(b"sec-fetch-site") == b"cross-site":
                return 403, "cross-site requests are not allowed (server.cors_origins)"
            return None  # not a browser
        text = origin.decode("latin-1")
        host = headers.get(b"host", b"").decode("latin-1")
        if origin_allowed(text, host, self.config.cors_origins):
            return None
        return 403, f"origin {text!r} is not allowed (server.cors_origins)"

    def _check_sessions(self, scope: Scope, path: str, client: str) -> tuple[int, str] | None:
        """Each Engine.IO handshake (a request without ``sid``) opens a session the server
        keeps until it times out; without a cap a client can open thousands."""
        if self.socketio_sessions is None or not path.startswith("/socket.io/"):
            return None
        if "sid" in parse_qs(scope.get("query_string", b"").decode("latin-1")):
            return None
        total, mine = self.socketio_sessions(client)
        if total >= self.config.max_socketio_sessions:
            return 429, f"more than {self.config.max_socketio_sessions} Socket.IO sessions"
        if mine >= self.config.max_connections_per_client:
            return 429, (
                f"more than {self.config.max_connections_per_client} Socket.IO sessions "
                "from this address"
            )
        return None

    def _too_large(self) -> str:
        return f"request body larger than {self.config.max_body_bytes} bytes"

    def _capped(self, receive: Receive) -> Receive:
        """Counts the bytes of bodies without (or with a lying) Content-Length."""
        seen = 0
        limit = self.config.max_body_bytes

        async def capped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    self.refused["413"] += 1
                    raise BodyTooLarge(self._too_large())
            return message

        return capped

    def _log_refusal(self, scope: Scope, status: int, error: str) -> None:
        """One line per client and status every LOG_EVERY_S, with how many were refused
        meanwhile: a flood of refused requests must not become a flood of log lines (disk,
        and time on the event loop)."""
        client = (scope.get("client") or ("?", 0))[0]
        key = (client, status)
        now = time.monotonic()
        logged_at, quiet = self._logged.get(key, (0.0, 0))
        if now - logged_at < LOG_EVERY_S:
            self._logged[key] = (logged_at, quiet + 1)
            return
        if len(self._logged) > 10_000:  # many clients: forget the oldest windows
            self._logged = {k: v for k, v in self._logged.items() if now - v[0] < LOG_EVERY_S}
        self._logged[key] = (now, 0)
        fields = {"status": status, "path": scope["path"], "client": client, "error": error}
        if quiet:
            fields["also_refused"] = quiet
        log.warning("request refused", extra={"fields": fields})

    async def _refuse(self, scope: Scope, send: Send, status: int, error: str) -> None:
        self.refused[str(status)] += 1
        self._log_refusal(scope, status, error)
        headers = [(b"content-type", b"application/json")]
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        body = json.dumps({"error": error}).encode()
        prefix = "http."
        if scope["type"] == "websocket":
            if "websocket.http.response" not in scope.get("extensions", {}):
                # Closing before accepting answers the handshake with a bare 403.
                await send({"type": "websocket.close", "code": 1008, "reason": error[:120]})
                return
            prefix = "websocket.http."  # the handshake gets the real status and reason
        await send({"type": prefix + "response.start", "status": status, "headers": headers})
        await send({"type": prefix + "response.body", "body": body})


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a body outgrows the limit mid-stream; FastAPI passes an
    HTTPException raised while reading a body through as it is."""

    def __init__(self, detail: str) -> None:
        super().__init__(413, detail)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
