"""A flow definition: nodes, edges and a trigger (the body of ``POST /api/flows``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
NODE_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"  # usable as a name in expressions


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Trigger(_Model):
    """``manual``: only ``POST /run``; ``interval``: every ``seconds``; ``event``: each
    /ws/events event of type ``event`` (optionally of ``stream``/``analyzer``, and when the
    expression ``when`` over the event is true, e.g. ``result.moving``); ``clip``: each clip
    result of ``stream``."""

    kind: Literal["manual", "interval", "event", "clip"] = Field(
        "manual", description="what starts a run"
    )
    seconds: float | None = Field(None, ge=0.05, le=86400, description="interval: the period")
    event: str | None = Field(None, max_length=64, description="event: the /ws/events type")
    stream: str | None = Field(None, description="event, clip: only this stream's")
    analyzer: str | None = Field(None, description="event: only this analyzer's")
    when: str | None = Field(
        None, max_length=2000, description="event: an expression over the event, e.g. result.moving"
    )

    @model_validator(mode="after")
    def _needs(self) -> Trigger:
        if self.kind == "interval" and self.seconds is None:
            raise ValueError("an interval trigger needs seconds")
        if self.kind == "event" and not self.event:
            raise ValueError("an event trigger needs event (e.g. 'analysis', 'alert')")
        return self


class NodeSpec(_Model):
    id: str = Field(pattern=NODE_ID_PATTERN, description="the node's name in edges and expressions")
    type: str = Field(description="a node type (GET /api/flow-nodes)")
    params: dict[str, Any] = Field(default_factory=dict, description="the type's parameters")
    timeout_s: float | None = Field(None, gt=0, le=3600, description="null = the type's default")
    retries: int = Field(0, ge=0, le=10, description="attempts after a failure")
    retry_delay_s: float = Field(0.5, ge=0, le=60, description="before the first retry, doubling")
    on_error: Literal["fail_run", "skip_branch", "continue"] = Field(
        "fail_run",
        description="fail_run: cancel the run; skip_branch: skip its descendants; continue: "
        "descendants get null",
    )


class FlowDefinition(_Model):
    id: str = Field(pattern=ID_PATTERN, description="the flow's name in the API")
    name: str | None = Field(None, max_length=200, description="a title for people")
    description: str | None = Field(None, max_length=2000, description="free text")
    stream: str | None = Field(None, description="default stream for nodes that read video")
    trigger: Trigger = Field(default_factory=Trigger, description="what starts a run")
    nodes: list[NodeSpec] = Field(min_length=1, max_length=500, description="the graph's nodes")
    edges: list[tuple[str, str]] = Field(
        default_factory=list,
        max_length=5000,
        description="[from, to] node ids: a node's inputs are its predecessors' outputs",
    )
    max_concurrent_runs: int = Field(1, ge=1, le=64, description="runs of this flow at once")
    overlap: Literal["queue", "skip", "cancel_previous"] = Field(
        "skip", description="a trigger while max_concurrent_runs are running"
    )
    max_queued: int = Field(10, ge=1, le=1000, description="overlap=queue: pending runs kept")
    enabled: bool = Field(True, description="flows from the config file start with the server")
