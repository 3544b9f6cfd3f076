"""What a node type is: typed inputs and output, validated parameters, an async ``run``.

A new node type is a subclass decorated with ``@NODE_TYPES.register("name")`` in a small
module imported by ``nodes/__init__.py``. One instance exists per node of a started flow and
lives as long as the flow runs, so a node may keep state across runs (a motion background, an
alert's hysteresis).
Blocking work goes through ``ctx.blocking`` (a bounded thread pool), never on the loop.
"""

from __future__ import annotations

import asyncio
import json
import string
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from vlm_monitor.flows.model import FlowDefinition, NodeSpec
from vlm_monitor.flows.ports import FlowPorts
from vlm_monitor.geometry import Placement
from vlm_monitor.registry import Registry

T = TypeVar("T")
# Port types: what a node outputs, and what an input accepts.
FRAME, CLIP, DATA, GATE = "frame", "clip", "data", "gate"


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class FrameValue:
    stream: str
    seq: int
    ts: float
    image: np.ndarray  # BGR, read-only
    placement: Placement | None = None  # where the image sits in the source; None: all of it

    @property
    def place(self) -> Placement:
        if self.placement is not None:
            return self.placement
        h, w = self.image.shape[:2]
        return Placement.whole((int(w), int(h)))

    def summary(self) -> dict[str, Any]:
        h, w = self.image.shape[:2]
        sw, sh = self.place.source
        return {"stream": self.stream, "seq": self.seq, "ts": self.ts, "size": f"{w}x{h}",
                "source_size": f"{sw}x{sh}"}  # fmt: skip


@dataclass(frozen=True)
class ClipValue:
    stream: str
    frames: list[np.ndarray]
    timestamps: list[float]

    def summary(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "frames": len(self.frames),
            "start": self.timestamps[0] if self.timestamps else None,
            "end": self.timestamps[-1] if self.timestamps else None,
        }


@dataclass(frozen=True)
class Gate:
    """A yes/no output (condition, watch): nodes after a closed gate are skipped, except
    those that want to see it (alert, for its hysteresis)."""

    value: bool
    data: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"value": self.value, **self.data}


def summarize(value: Any) -> Any:
    """A JSON-safe view of a node output (for expressions, events, run records, webhooks)."""
    if isinstance(value, FrameValue | ClipValue | Gate):
        return value.summary()
    if isinstance(value, dict):
        return {str(k): summarize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [summarize(v) for v in value]
    if isinstance(value, np.ndarray):
        return f"<array {'x'.join(map(str, value.shape))}>"
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


@dataclass
class RunContext:
    """What a node sees of the world during one run."""

    ports: FlowPorts
    flow: FlowDefinition
    run_id: str
    event: dict[str, Any] | None  # the event that triggered the run, if any
    executor: Any  # concurrent.futures.Executor for blocking work
    # Every node's output so far in this run, by node id (filled by the executor).
    outputs: dict[str, Any] = field(default_factory=dict)

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def render(self, template: str, inputs: dict[str, Any], stream: str | None) -> str:
        """``$stream $flow $run_id $<input node id>`` (text of a result, else its JSON)."""
        values: dict[str, Any] = {
            "stream": stream or "",
            "flow": self.flow.id,
            "run_id": self.run_id,
        }
        for name, value in inputs.items():
            s = summarize(value)
            values[name] = s["text"] if isinstance(s, dict) and "text" in s else json.dumps(s)
        return string.Template(template).safe_substitute(values)


class NodeType(ABC):
    type_name: ClassVar[str]
    description: ClassVar[str] = ""
    ParamsModel: ClassVar[type[BaseModel]] = Params
    min_inputs: ClassVar[int] = 0
    max_inputs: ClassVar[int | None] = None
    accepts: ClassVar[frozenset[str] | None] = None  # None: any type
    output: ClassVar[str] = DATA
    sees_gates: ClassVar[bool] = False
    needs_stream: ClassVar[bool] = False
    default_timeout_s: ClassVar[float] = 30.0

    def __init__(self, spec: NodeSpec, params: BaseModel, flow: FlowDefinition) -> None:
        self.spec, self.params, self.flow = spec, params, flow

    @property
    def stream(self) -> str | None:
        return getattr(self.params, "stream", None) or self.flow.stream

    def check(self, inputs: list[str]) -> list[str]:
        """Problems beyond types and counts (e.g. an expression naming a missing input)."""
        return []

    async def start(self, ports: FlowPorts) -> None:  # noqa: B027 (an optional hook)
        """Called when the flow starts (e.g. to begin buffering frames)."""

    async def stop(self) -> None:  # noqa: B027 (an optional hook)
        """Called when the flow stops."""

    @abstractmethod
    async def run(self, ctx: RunContext, inputs: dict[str, Any]) -> Any:
        """The node's work for one run; blocking parts through ``ctx.blocking``."""


NODE_TYPES: Registry[type[NodeType]] = Registry("flow node type")


class NodeError(RuntimeError):
    """A node failed in a way its message explains (no traceback needed)."""
