"""Nodes that tell someone: ``webhook`` (HTTP POST with retries) and ``alert`` (stored and
broadcast, with cooldown, de-duplication and hysteresis so one incident is one alert)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from pydantic import Field, field_validator

from vlm_monitor.events.model import frame_time
from vlm_monitor.flows.nodes.base import (
    NODE_TYPES,
    ClipValue,
    FrameValue,
    Gate,
    NodeError,
    NodeType,
    Params,
    RunContext,
    summarize,
)


class WebhookParams(Params):
    url: str = Field(max_length=2000)
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(10.0, gt=0, le=120)
    attempts: int = Field(3, ge=1, le=10)
    backoff_s: float = Field(0.5, ge=0, le=60, description="doubled after each failed attempt")

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        url = httpx.URL(value)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _listed(host: str, address: Address, allow: Sequence[str]) -> bool:
    for entry in allow:
        if entry.lower() == host.lower():
            return True
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue  # a host name, compared above
    return False


async def check_target(host: str, port: int, allow: Sequence[str]) -> None:
    """A webhook may not reach this machine or its private network (the server's own API,
    a router, a cloud metadata service) unless the address is listed in
    ``server.webhook_allow``: flows are user input, and the server is inside the network."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise NodeError(f"webhook host {host!r} cannot be resolved: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).partition("%")[0])
        internal = not address.is_global or address.is_multicast
        if internal and not _listed(host, address, allow):
            raise NodeError(
                f"webhook host {host!r} is {address}, a private, loopback or link-local "
                "address: list it in server.webhook_allow to allow it"
            )


@NODE_TYPES.register("webhook")
class WebhookNode(NodeType):
    """POSTs ``{"flow", "run_id", "stream", "ts", "inputs"}`` as JSON; retries connection
    errors, timeouts, 429 and 5xx; a 4xx other than 429 fails at once."""

    type_name = "webhook"
    description = "HTTP POST of the inputs, with retries"
    ParamsModel = WebhookParams
    default_timeout_s = 120.0

    async def run(self, ctx: RunContext, inputs: dict[str, Any]) -> dict[str, Any]:
        p: WebhookParams = self.params  # type: ignore[assignment]
        body = {
            "flow": self.flow.id,
            "run_id": ctx.run_id,
            "stream": self.flow.stream,
            "ts": time.time(),
            "inputs": summarize(inputs),
        }
        url = httpx.URL(p.url)
        port = url.port or (443 if url.scheme == "https" else 80)
        await check_target(url.host, port, ctx.ports.webhook_allow)
        delay, last = p.backoff_s, ""
        # Redirects are not followed: one could lead to an address the check refuses.
        async with httpx.AsyncClient(timeout=p.timeout_s) as client:
            for attempt in range(1, p.attempts + 1):
                try:
                    resp = await client.post(p.url, json=body, headers=p.headers)
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                else:
                    if resp.status_code < 400:
                        return {"status": resp.status_code, "attempts": attempt}
                    last = f"HTTP {resp.status_code}"
                    if resp.status_code < 500 and resp.status_code != 429:
                        break
                if attempt < p.attempts:
                    await asyncio.sleep(delay)
                    delay *= 2
        raise NodeError(f"webhook {p.url} failed: {last}")


class AlertParams(Params):
    message: str = Field("$flow on $stream", max_length=2000, description="template")
    severity: Literal["info", "warning", "critical"] = "warning"
    key: str = Field("$flow", max_length=200, description="de-duplication key (template)")
    cooldown_s: float = Field(60.0, ge=0, description="no new alert for the key before this")
    raise_after: int = Field(1, ge=1, le=100, description="consecutive true runs to raise")
    clear_after: int = Field(1, ge=1, le=100, description="consecutive false runs to re-arm")


@dataclass
class _Incident:
    trues: int = 0
    falses: int = 0
    active: bool = False
    last_raised: float = float("-inf")


@NODE_TYPES.register("alert")
class AlertNode(NodeType):
    """Sees the gates before it (all true = the condition holds). An incident is raised once
    after ``raise_after`` true runs in a row, stays open while the condition holds, and is
    re-armed after ``clear_after`` false runs; ``cooldown_s`` spaces alerts of one key."""

    type_name = "alert"
    description = "stored + broadcast alert, one per incident"
    ParamsModel = AlertParams
    min_inputs = 1
    sees_gates = True
    default_timeout_s = 10.0

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._incidents: dict[str, _Incident] = {}

    async def run(self, ctx: RunContext, inputs: dict[str, Any]) -> dict[str, Any]:
        p: AlertParams = self.params  # type: ignore[assignment]
        gates = [v for v in inputs.values() if isinstance(v, Gate)]
        holds = all(g.value for g in gates)
        key = ctx.render(p.key, inputs, self.flow.stream)
        incident = self._incidents.setdefault(key, _Incident())
        now = time.time()
        if holds:
            incident.trues, incident.falses = incident.trues + 1, 0
        else:
            incident.trues, incident.falses = 0, incident.falses + 1
            if incident.active and incident.falses >= p.clear_after:
                incident.active = False
            return {"raised": False, "holds": False, "key": key, "active": incident.active}
        if (
            incident.active
            or incident.trues < p.raise_after
            or now - incident.last_raised < p.cooldown_s
        ):
            return {"raised": False, "holds": True, "key": key, "active": incident.active}
        incident.active, incident.last_raised = True, now
        doc = {
            "flow": self.flow.id,
            "run_id": ctx.run_id,
            "node": self.spec.id,
            "stream": self.flow.stream,
            "key": key,
            "severity": p.severity,
            "message": ctx.render(p.message, inputs, self.flow.stream),
            "created_at": now,
            "frame_ts": _frame_ts([*inputs.values(), *ctx.outputs.values()], ctx.event),
            "inputs": summarize(inputs),
        }
        await ctx.blocking(ctx.ports.results.alert, doc)
        return {"raised": True, "holds": True, "key": key, "active": True, "alert_id": doc["id"]}


def _frame_ts(values: list[Any], trigger: dict[str, Any] | None) -> float | None:
    """The capture time of the frame behind an alert: the first frame or clip among its
    inputs, then the run's other outputs, else the result that started the run."""
    for value in values:
        if isinstance(value, FrameValue):
            return value.ts
        if isinstance(value, ClipValue) and value.timestamps:
            return value.timestamps[-1]
    return frame_time(trigger) if trigger else None
