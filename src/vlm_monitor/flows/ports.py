"""What flows may touch of the rest of the server, as narrow ports the composition root
(``services.py``) fills in. Flows never see the whole server: a node reads frames, asks a VLM,
reads an analyzer's latest output and hands what it produced to the results; the flow manager
keeps its definitions and runs and publishes its own state. Tests fill these with fakes."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from vlm_monitor.analyzers.base import SharedModels
from vlm_monitor.hub import StreamHub
from vlm_monitor.types import Event
from vlm_monitor.vlm.base import Provider


class FlowResults(Protocol):
    """Where a flow's outputs go, to be stored and pushed like every other result."""

    def flow_output(self, doc: dict[str, Any]) -> int:
        """A ``store`` node's result; returns its row id. Blocking (call in a thread)."""
        ...

    def alert(self, doc: dict[str, Any]) -> int:
        """An alert: stored (its id set in ``doc``) and pushed. Blocking (call in a thread)."""
        ...

    def flow_event(self, type_: str, stream: str | None, data: dict[str, Any]) -> dict[str, Any]:
        """A ``broadcast`` node's event, pushed as is; returns it with its ``seq``. On the
        event loop."""
        ...


@dataclass(frozen=True)
class FlowPorts:
    """Everything a node may use; one instance serves every flow."""

    hub: StreamHub  # frames: latest, subscribe/unsubscribe
    results: FlowResults
    providers: Mapping[str, Provider]  # configured VLM providers by name, in config order
    latest_analysis: Callable[[str, str], dict[str, Any] | None]  # (stream, analyzer)
    face_models: SharedModels  # per-thread face and emotion models, shared with the analyzers
    webhook_allow: Sequence[str]  # server.webhook_allow: internal addresses webhooks may reach


class FlowEvents(Protocol):
    """The event bus as the flow manager uses it: its own ``flow.*`` events out, the events
    that trigger flows in."""

    def publish(self, event: Event) -> dict[str, Any]: ...

    def follow(self) -> AsyncGenerator[dict[str, Any], None]: ...


class FlowStore(Protocol):
    """Where definitions added over the API and finished runs are kept."""

    async def load_flows(self) -> list[dict[str, Any]]: ...

    async def save_flow(self, flow_id: str, doc: dict[str, Any]) -> None: ...

    async def delete_flow(self, flow_id: str) -> None: ...

    def save_run_sync(self, doc: dict[str, Any]) -> None:
        """Blocking (called in a thread)."""
        ...
