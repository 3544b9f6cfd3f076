"""How route handlers reach the services the composition root built."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException
from starlette.requests import HTTPConnection

from vlm_monitor.services import Services


def get_services(conn: HTTPConnection) -> Services:
    services: Services = conn.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def require_stream(services: Services, stream_id: str) -> None:
    if stream_id not in services.streams:
        raise HTTPException(404, f"unknown stream {stream_id!r}")
