"""Provider kinds by name: adding one is a class and a line here."""

from __future__ import annotations

from collections.abc import Callable

from vlm_monitor.config import VlmProviderConfig
from vlm_monitor.vlm.base import Provider
from vlm_monitor.vlm.http import DashScopeProvider, OpenAIProvider
from vlm_monitor.vlm.local import LocalProvider
from vlm_monitor.vlm.resilience import GuardedProvider

KINDS: dict[str, Callable[[VlmProviderConfig], Provider]] = {
    "openai": OpenAIProvider,
    "dashscope": DashScopeProvider,
    "local": LocalProvider,
}


def build_provider(config: VlmProviderConfig) -> GuardedProvider:
    return GuardedProvider(
        KINDS[config.kind](config),
        concurrency=config.concurrency,
        calls_per_minute=config.calls_per_minute,
        retries=config.retries,
        breaker_failures=config.breaker_failures,
        breaker_reset_s=config.breaker_reset_s,
    )
