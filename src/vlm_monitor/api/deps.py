"""How route handlers reach the services the composition root built."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from vlm_monitor.services import Services
from vlm_monitor.sources.manager import StreamNotFoundError
from vlm_monitor.types import InvalidError


def get_services(conn: HTTPConnection) -> Services:
    services: Services = conn.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def require_stream(services: Services, stream_id: str) -> None:
    if stream_id not in services.streams:
        raise StreamNotFoundError(stream_id)


def stream_or_only(services: Services, stream_id: str | None) -> str:
    """The named stream, or, when none is named, the only one there is: the original
    inference client's calls name no stream, since its backend had one camera."""
    if stream_id is not None:
        require_stream(services, stream_id)
        return stream_id
    ids = services.streams.ids()
    if len(ids) == 1:
        return ids[0]
    raise InvalidError(f"name the stream (stream=...): this server has {len(ids)}: {sorted(ids)}")
