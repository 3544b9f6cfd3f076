"""WebRTC: WHIP ingest (``POST /whip/{stream}``, ``DELETE`` its resource, ``/publish``) and
the WHEP-style live view (``POST /whep/{stream}``, ``DELETE`` its resource)."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from vlm_monitor.api.deps import ServicesDep
from vlm_monitor.api.guard import bearer, same
from vlm_monitor.config import StreamConfig, describe_errors
from vlm_monitor.services import Services
from vlm_monitor.webrtc.whip import OfferError

router = APIRouter()


def _check_token(request: Request, token: str | None, api_token: str | None) -> None:
    """A publisher shows the stream's own publish token or, failing that, the API token.
    Open only when the server has neither: a server with an API token never takes an
    anonymous publisher, even for a stream created without a publish token."""
    if token is None and api_token is None:
        return
    sent = bearer(request.headers.get("authorization", ""))
    if not (same(sent, token) or same(sent, api_token)):
        raise HTTPException(
            401,
            "this stream needs its publish token (or the API token): Authorization: Bearer <token>",
            headers={"WWW-Authenticate": 'Bearer realm="whip"'},
        )


async def _stream_token(services: Services, request: Request, stream_id: str) -> None:
    """Checks the publisher's token; creates the stream when auto_create allows it."""
    cfg = services.config.webrtc
    if stream_id in services.streams:
        config = services.streams.get(stream_id).config
        if not config.url.startswith("whip:"):
            raise HTTPException(409, f"stream {stream_id!r} reads {config.url}, not whip://")
        _check_token(request, config.whip_token, services.config.server.api_token)
        return
    if not cfg.auto_create:
        raise HTTPException(
            404,
            f"unknown stream {stream_id!r}: add it with url whip:// (POST /api/streams) "
            "or set webrtc.auto_create",
        )
    _check_token(request, cfg.publish_token, services.config.server.api_token)
    try:
        config = StreamConfig(
            id=stream_id, url="whip://", analyzers=cfg.auto_analyzers, whip_token=cfg.publish_token
        )
    except ValidationError as exc:
        raise HTTPException(422, "; ".join(describe_errors(exc))) from None
    if stream_id not in services.streams:
        await services.streams.add(config, persistent=False)


async def _read_offer(request: Request, limit: int) -> str:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/sdp":
        raise HTTPException(415, "send the SDP offer with Content-Type: application/sdp")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"offer over {limit} bytes")
    body = await request.body()
    if len(body) > limit:
        raise HTTPException(413, f"offer over {limit} bytes")
    try:
        return body.decode()
    except UnicodeDecodeError:
        raise HTTPException(400, "the offer is not UTF-8 text") from None


def _answer(sdp: str, location: str, resource: str) -> Response:
    return Response(
        sdp,
        status_code=201,
        media_type="application/sdp",
        headers={"Location": location, "ETag": f'"{resource}"'},
    )


@router.post("/whip/{stream_id}", status_code=201)
async def whip_publish(stream_id: str, request: Request, services: ServicesDep) -> Response:
    offer = await _read_offer(request, services.config.webrtc.max_offer_bytes)
    await _stream_token(services, request, stream_id)
    inbox = services.streams.whip.get(stream_id)
    try:
        session, answer = await services.whip.publish(stream_id, inbox, offer)
    except OfferError as exc:
        raise HTTPException(400, str(exc)) from None
    except RuntimeError as exc:
        raise HTTPException(409, str(exc)) from None
    location = f"/whip/{stream_id}/{session.resource_id}"
    return _answer(answer, location, session.resource_id)


@router.delete("/whip/{stream_id}/{resource_id}")
async def whip_end(
    stream_id: str, resource_id: str, request: Request, services: ServicesDep
) -> dict[str, object]:
    whip_token = (
        services.streams.get(stream_id).config.whip_token if stream_id in services.streams else None
    )
    _check_token(request, whip_token, services.config.server.api_token)
    if not await services.whip.end(stream_id, resource_id, "publisher sent DELETE"):
        raise HTTPException(404, f"no publish session {resource_id!r} on stream {stream_id!r}")
    return {"stream": stream_id, "ended": True}


@router.get("/publish", response_class=HTMLResponse)
async def publish_page() -> str:
    return (resources.files("vlm_monitor") / "web" / "publish.html").read_text()


@router.post("/whep/{stream_id}", status_code=201)
async def whep_view(stream_id: str, request: Request, services: ServicesDep) -> Response:
    """A WebRTC viewer of any stream (recvonly offer in, VP8 from the shared encoder out)."""
    offer = await _read_offer(request, services.config.webrtc.max_offer_bytes)
    if stream_id not in services.streams:
        raise HTTPException(404, f"unknown stream {stream_id!r}")
    try:
        viewer, answer = await services.whep.view(stream_id, offer)
    except OfferError as exc:
        raise HTTPException(400, str(exc)) from None
    return _answer(answer, f"/whep/{stream_id}/{viewer.resource_id}", viewer.resource_id)


@router.delete("/whep/{stream_id}/{resource_id}")
async def whep_end(stream_id: str, resource_id: str, services: ServicesDep) -> dict[str, object]:
    viewer = services.whep.viewers.get(resource_id)
    if viewer is None or viewer.stream_id != stream_id:
        raise HTTPException(404, f"no viewer {resource_id!r} on stream {stream_id!r}")
    await services.whep.end(resource_id)
    return {"stream": stream_id, "ended": True}
