"""Control and plumbing nodes: ``condition``, ``wait``, ``store``, ``broadcast``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pydantic import Field, field_validator

from vlm_monitor.flows.expr import Expression, ExpressionError
from vlm_monitor.flows.nodes.base import (
    GATE,
    NODE_TYPES,
    Gate,
    NodeError,
    NodeType,
    Params,
    RunContext,
    summarize,
)

RESERVED_EVENTS = {"hello", "result", "analysis", "stream.state", "alert", "flow.node", "flow.run"}


class ConditionParams(Params):
    expr: str = Field(max_length=2000, description="e.g. motion.level > 0.05 or 'EXIT' in ocr.text")

    @field_validator("expr")
    @classmethod
    def _parses(cls, value: str) -> str:
        try:
            Expression(value)
        except ExpressionError as exc:
            raise ValueError(str(exc)) from None
        return value


@NODE_TYPES.register("condition")
class ConditionNode(NodeType):
    """A safe expression over the inputs (by node id), ``event`` (the triggering event) and
    ``stream``; nodes after it run only when it is true."""

    type_name = "condition"
    description = "true/false from an expression over the inputs; gates what follows"
    ParamsModel = ConditionParams
    min_inputs = 1
    output = GATE
    default_timeout_s = 5.0

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.expression = Expression(self.params.expr)  # type: ignore[attr-defined]

    def check(self, inputs: list[str]) -> list[str]:
        unknown = sorted(self.expression.names - {*inputs, "event", "stream"})
        if unknown:
            return [f"params.expr uses {unknown}, which are not among its inputs {sorted(inputs)}"]
        return []

    async def run(self, ctx: RunContext, inputs: dict[str, Any]) -> Gate:
        names = {k: summarize(v) for k, v in inputs.items()}
        names["event"] = ctx.event or {}
        names["stream"] = self.flow.stream
        try:
            # Off the loop and time-limited: an expression must not hold the server.
            value = bool(await self.expression.evaluate_in_thread(names))
        except ExpressionError as exc:
            raise NodeError(f"expression failed: {exc}") from None
        return Gate(value, {"expr": self.expression.source})


class WaitParams(Params):
    seconds: float = Field(ge=0, le=3600)


@NODE_TYPES.register("wait")
class WaitNode(NodeType):
    type_name = "wait"
    description = "waits, then passes on"
    ParamsModel = WaitParams
    default_timeout_s = 3600.0

    async def run(self, ctx: RunContext, inputs: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(self.params.seconds)  # type: ignore[attr-defined]
        return {"waited_s": self.params.seconds}  # type: ignore[attr-defined]


class StoreParams(Params):
    label: str | None = Field(None, max_length=200)


@NODE_TYPES.register("store")
class StoreNode(NodeType):
    """Saves the inputs as a result (``GET /api/results``, ``source: "flow"``)."""

    type_name = "store"
    description = "saves its inputs as a result"
    ParamsModel = StoreParams
    min_inputs = 1

    async def run(self, ctx: RunContext, inputs: dict[str, Any]) -> dict[str, Any]:
        doc = {
            "stream": self.flow.stream or "",
            "source": "flow",
            "flow": self.flow.id,
            "run_id": ctx.run_id,
            "node": self.spec.id,
            "label": self.params.label,  # type: ignore[attr-defined]
            "created_at": time.time(),
            "data": summarize(inputs),
        }
        row_id = await ctx.blocking(ctx.ports.results.flow_output, doc)
        return {"id": row_id}


class BroadcastParams(Params):
    type: str = Field("flow.message", pattern=r"^[a-z][a-z0-9_.-]{0,63}$")
    message: str | None = Field(None, max_length=2000, description="template: $stream $<node>")

    @field_validator("type")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_EVENTS:
            raise ValueError(f"{value!r} is reserved; use your own event type")
        return value


@NODE_TYPES.register("broadcast")
class BroadcastNode(NodeType):
    type_name = "broadcast"
    description = "publishes a custom event on /ws/events"
    ParamsModel = BroadcastParams

    async def run(self, ctx: RunContext, inputs: dict[str, Any]) -> dict[str, Any]:
        p: BroadcastParams = self.params  # type: ignore[assignment]
        data = {"flow": self.flow.id, "run_id": ctx.run_id, "data": summarize(inputs)}
        if p.message is not None:
            data["message"] = ctx.render(p.message, inputs, self.flow.stream)
        doc = ctx.ports.results.flow_event(p.type, self.flow.stream, data)
        return {"seq": doc["seq"]}
