"""Built-in node types; importing this package registers them."""

from vlm_monitor.flows.nodes import logic, notify, video, vlm  # noqa: F401
from vlm_monitor.flows.nodes.base import NODE_TYPES

__all__ = ["NODE_TYPES"]
