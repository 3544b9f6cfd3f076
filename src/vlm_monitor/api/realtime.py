"""``WS /ws/video[?source=<stream id>]`` (the original chat service's realtime session) and
``/chat``."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, WebSocket
from fastapi.responses import HTMLResponse

from vlm_monitor.api.deps import ServicesDep
from vlm_monitor.realtime.session import RealtimeSession, StreamSource

router = APIRouter()


@router.websocket("/ws/video")
async def video_session(ws: WebSocket, services: ServicesDep) -> None:
    metrics, config = services.realtime_metrics, services.config.realtime
    if len(metrics.active) >= config.max_sessions:
        await ws.accept()
        await ws.send_json(
            {
                "type": "error",
                "code": "too_many_sessions",
                "message": f"max {config.max_sessions} sessions",
            }
        )
        await ws.close(1013)
        return
    source = None
    wanted = ws.query_params.get("source")
    if wanted is not None:
        if wanted not in services.streams:
            await ws.accept()
            message = (
                f"source {wanted!r} is not a stream of this server; GET /api/streams lists them"
            )
            await ws.send_json({"type": "error", "code": "bad_source", "message": message})
            await ws.close(1008)
            return
        published = services.streams.get(wanted).config.url.startswith("whip:")
        inbox = services.streams.whip.get(wanted) if published else None
        source = StreamSource(wanted, services.hub, inbox)
    await RealtimeSession(ws, config, metrics, source).run()


@router.get("/chat", response_class=HTMLResponse)
async def chat_page() -> str:
    return (resources.files("vlm_monitor") / "web" / "chat.html").read_text()


@router.get("/api/realtime")
async def realtime_status(services: ServicesDep) -> dict[str, object]:
    metrics = services.realtime_metrics
    return {
        "active_sessions": len(metrics.active),
        "sessions_total": metrics.sessions_total,
        "totals": metrics.totals(),
        "sessions": {sid: s.to_json() for sid, s in metrics.active.items()},
    }
