"""The exam-proctoring frontend's Socket.IO channel, fed from the event bus.

Analyzer results are emitted on the event loop by one bus listener, so there is nothing to
make "safe" about emitting from worker threads (the original consumer's ``_safe_emit``):
workers never emit. Per result, in both namespaces ``/`` and ``/monitor``: the main event (e.g.
``video_emotion_result``), its alternate name (``rtsp_video_analysis``), and the room event
(``student.emotion``) to the room named after the stream. Clients join a room with the
``join`` event (``{"stream_name": ...}``) or ``?stream_name=`` when connecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs

import socketio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vlm_monitor.aio import cancel_and_wait
from vlm_monitor.broadcast.bus import EventBus
from vlm_monitor.config import STREAM_ID_PATTERN
from vlm_monitor.origins import origin_allowed

log = logging.getLogger("vlm_monitor.socketio")
NAMESPACES = ("/", "/monitor")
# analyzer -> (main event, alternate event, room event)
EVENT_NAMES = {
    "emotion": ("video_emotion_result", "rtsp_video_analysis", "student.emotion"),
    "heart_rate": ("heart_rate_result", "rtsp_heart_rate_analysis", "student.heart_rate"),
    "motion": ("motion_result", "rtsp_motion_analysis", "student.motion"),
    "ocr": ("ocr_result", "rtsp_ocr_analysis", "student.ocr"),
    "attention": ("attention_result", "rtsp_attention_analysis", "student.attention"),
}


def exam_payload(doc: dict[str, Any]) -> dict[str, Any]:
    """Exactly the payload the exam-proctoring frontend already reads."""
    return {
        "session_id": doc.get("session_id"),
        "stream_name": doc["stream"],
        "result": doc["result"],
        "video_timestamp": doc["video_timestamp"],
    }


def _lower_header_names(app: ASGIApp) -> ASGIApp:
    """Engine.IO sends header names as it spells them (``Access-Control-Allow-Origin``)
    where ASGI expects lower case. Starlette's CORSMiddleware, in front, sets that header
    again and replaces only the lower-case one: the browser would get two values and refuse
    every polling response."""

    async def lowered(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_lowered(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [(k.lower(), v) for k, v in message.get("headers", ())]
            await send(message)

        await app(scope, receive, send_lowered)

    return lowered


def _room_of(data: Any) -> str | None:
    name = data
    if isinstance(data, dict):
        name = data.get("stream_name", data.get("room"))
    if isinstance(name, str) and re.match(STREAM_ID_PATTERN, name):
        return name
    return None


class SocketIOBridge:
    """With ``redis_url`` (bus kind redis), python-socketio's Redis manager carries every
    emit to the clients of every node; each node then emits only its own results."""

    def __init__(
        self,
        bus: EventBus,
        redis_url: str | None = None,
        channel: str = "",
        cors_origins: Sequence[str] = (),
    ) -> None:
        self.bus = bus
        self.cors_origins = tuple(cors_origins)
        self.multi_node = redis_url is not None
        manager = (
            socketio.AsyncRedisManager(redis_url, channel=f"{channel}:socketio")
            if redis_url is not None
            else None
        )
        # Engine.IO checks the Origin of every request itself (400 when refused), on its own
        # list: a predicate gives it the guard's, so Socket.IO, HTTP CORS and WebSocket agree.
        # A plain list would drop this server's own origin (the dashboard) unless listed; None
        # would ignore cors_origins. Clients that send no Origin (programs) are not checked.
        # Engine.IO also answers CORS on its own responses, credentials allowed (for clients
        # made with withCredentials: true; no cookie is ever a credential here).
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            cors_allowed_origins=self._origin_allowed,
            logger=False,
            client_manager=manager,
        )
        self.emitted = 0
        self._task: asyncio.Task[None] | None = None
        for namespace in NAMESPACES:
            self._register(namespace)

    def _origin_allowed(self, origin: str | None, environ: dict[str, Any]) -> bool:
        # Also asked for the CORS headers of requests without an Origin (and a TypeError
        # here would make Engine.IO retry the call with one argument).
        if origin is None:
            return False
        return origin_allowed(origin, environ.get("HTTP_HOST", ""), self.cors_origins)

    def sessions(self, client: str) -> tuple[int, int]:
        """Engine.IO sessions open in total, and those opened from ``client``'s address."""
        total = len(self.sio.eio.sockets)
        mine = 0
        for environ in self.sio.environ.values():
            peer = environ.get("asgi.scope", {}).get("client") or ("?", 0)
            mine += peer[0] == client
        return total, mine

    def asgi_app(self) -> ASGIApp:
        return _lower_header_names(socketio.ASGIApp(self.sio, socketio_path="socket.io"))

    def _register(self, namespace: str) -> None:
        sio = self.sio

        async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
            query = parse_qs(environ.get("QUERY_STRING", ""))
            room = _room_of(auth) or _room_of(query.get("stream_name", [None])[-1])
            if room is not None:
                await sio.enter_room(sid, room, namespace=namespace)

        def room_handler(enter: bool) -> Any:
            async def handle(sid: str, data: Any = None) -> dict[str, Any]:
                room = _room_of(data)
                if room is None:
                    return {"success": False, "error": 'send {"stream_name": "<stream id>"}'}
                change = sio.enter_room if enter else sio.leave_room
                await change(sid, room, namespace=namespace)
                return {"success": True, "room": room}

            return handle

        sio.on("connect", connect, namespace=namespace)
        sio.on("join", room_handler(enter=True), namespace=namespace)
        sio.on("leave", room_handler(enter=False), namespace=namespace)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="socketio-bridge")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        async with contextlib.aclosing(self.bus.follow()) as events:
            async for doc in events:
                if doc["type"] == "analysis" and not (self.multi_node and "node" in doc):
                    await self._emit(doc)

    async def _emit(self, doc: dict[str, Any]) -> None:
        names = EVENT_NAMES.get(doc["analyzer"])
        if names is None:
            return
        main, alternate, room_event = names
        payload = exam_payload(doc)
        try:
            for namespace in NAMESPACES:
                await self.sio.emit(main, payload, namespace=namespace)
                await self.sio.emit(alternate, payload, namespace=namespace)
                await self.sio.emit(room_event, payload, room=doc["stream"], namespace=namespace)
            self.emitted += 1
        except Exception:
            log.exception("socket.io emit failed", extra={"fields": {"stream": doc["stream"]}})
