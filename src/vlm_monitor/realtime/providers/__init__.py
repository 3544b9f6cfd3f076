"""Realtime omni-model providers; importing this package registers the built-in kinds."""

from vlm_monitor.realtime.providers import dashscope, openai  # noqa: F401
from vlm_monitor.realtime.providers.base import REALTIME_KINDS

__all__ = ["REALTIME_KINDS"]
