"""The configured VLM providers, built from the registered provider kinds."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from vlm_monitor.config import BudgetConfig, ClipsConfig, VlmProviderConfig
from vlm_monitor.registry import PluginError
from vlm_monitor.vlm import http, local  # noqa: F401 (they register the built-in kinds)
from vlm_monitor.vlm.base import PROVIDER_KINDS, ProviderError, VlmAnswer, VlmRequest
from vlm_monitor.vlm.budget import Governor, Ledger, Prices, limits
from vlm_monitor.vlm.resilience import Auditor, GuardedProvider, ProviderGroup

log = logging.getLogger("vlm_monitor.vlm")


def build_provider(config: VlmProviderConfig) -> GuardedProvider:
    return GuardedProvider(
        PROVIDER_KINDS.get(config.kind)(config),
        concurrency=config.concurrency,
        calls_per_minute=config.calls_per_minute,
        retries=config.retries,
        breaker_failures=config.breaker_failures,
        breaker_reset_s=config.breaker_reset_s,
        prices=Prices(config.price_input_per_1k, config.price_output_per_1k),
    )


class ProviderSet:
    """The configured providers, built once; a stream's clips get a group of them. Raises
    PluginError naming the first provider that cannot be built (a missing key, a malformed
    base_url): the server or worker building the set does not start without it."""

    def __init__(
        self, configs: list[VlmProviderConfig], budget: BudgetConfig | None = None
    ) -> None:
        """``budget``: the limits of all calls together (``vlm.budget``)."""
        self.providers: dict[str, GuardedProvider] = {}
        self.governor = Governor(budget)
        for cfg in configs:
            try:
                self.providers[cfg.name] = build_provider(cfg)
            except Exception as exc:
                self.close()
                reason = str(exc) if isinstance(exc, ProviderError) else _describe(exc)
                raise PluginError("VLM provider", cfg.name, reason) from exc
            self.providers[cfg.name].governor = self.governor

    def wanted(self, clips: ClipsConfig) -> list[str]:
        """The providers a stream's clips name (the first configured when they name none)."""
        if isinstance(clips.provider, list):
            return clips.provider
        return [clips.provider] if clips.provider else list(self.providers)[:1]

    def frame_plans(
        self, clips: ClipsConfig, request: VlmRequest, size: tuple[int, int]
    ) -> dict[str, dict[str, Any]]:
        """Per provider of ``clips``: what a clip of ``frames_per_clip`` frames of ``size``
        asked as ``request`` would send (``frames``, ``width``, ``height``), or why nothing
        fits (``error``). Providers that take no pictures (``local``) are left out."""
        out: dict[str, dict[str, Any]] = {}
        for name in self.wanted(clips):
            provider = self.providers.get(name)
            if provider is None:
                continue
            try:
                plan = provider.frame_plan(request, clips.frames_per_clip, size)
            except ProviderError as exc:
                out[name] = {"error": str(exc)}
                continue
            if plan is not None:
                out[name] = plan.to_json()
        return out

    def analyzer(self, clips: ClipsConfig) -> Callable[[VlmRequest], tuple[str, VlmAnswer]]:
        """The call a processor makes; raises ProviderError when no provider is available."""
        wanted = self.wanted(clips)
        chosen = [self.providers[n] for n in wanted if n in self.providers]
        missing = [n for n in wanted if n not in self.providers]
        if missing:
            log.error(
                "clips: unknown or unavailable provider(s); results will carry the error",
                extra={"fields": {"providers": missing}},
            )
        group = ProviderGroup(chosen, clips.strategy) if chosen else None

        def analyze(request: VlmRequest) -> tuple[str, VlmAnswer]:
            request.budget = clips.budget
            if group is None:
                raise ProviderError(f"no VLM provider available (configured: {clips.provider})")
            return group.analyze(request)

        return analyze

    def listen(self, listener: Callable[[str, float, bool], None]) -> None:
        """``listener(provider, seconds, ok)`` after each request to any of the providers, on
        the calling thread: quick and thread-safe (latency histograms)."""
        for provider in self.providers.values():
            provider.listeners.append(listener)

    def audit(self, auditor: Auditor) -> None:
        """``auditor(provider, request, answer, error, seconds)`` after each question."""
        for provider in self.providers.values():
            provider.auditors.append(auditor)

    def share_budgets(self, ledger: Ledger) -> None:
        """Budgets and spend counted in ``ledger`` (a SharedLedger: with every node on it)."""
        self.governor.ledger = ledger

    def status(
        self, skipped: dict[str, dict[str, int]] | None = None, spend: bool = False
    ) -> dict[str, Any]:
        """Per provider: this process's counters since start (calls, tokens, cost, rejected,
        per minute), the circuit breaker, and ``savings``: the clips ``skipped`` (by reason)
        instead of asking it, with the tokens and cost they would have spent at its average
        per answered call. With ``spend``, what it spent in the current windows, of every node
        when the ledger is shared: blocking (the ledger may ask Redis), call in a thread."""
        out = {}
        for name, p in self.providers.items():
            calls, tokens = p.per_minute()
            skips = (skipped or {}).get(name, {})
            answered = max(1, p.stats.calls - p.stats.failures)
            out[name] = {
                **vars(p.stats),
                "cost": round(p.stats.cost, 6),
                "calls_per_min": calls,
                "tokens_per_min": tokens,
                "circuit_open": p.breaker_open,
                "circuit": p.breaker_state,
                "prices": {
                    "input_per_1k": p.prices.input_per_1k,
                    "output_per_1k": p.prices.output_per_1k,
                },
                "budget": {"calls_per_minute": p.calls_per_minute},
                "savings": {
                    "clips_skipped": skips,
                    "tokens_est": round(sum(skips.values()) * p.stats.tokens / answered),
                    "cost_est": round(sum(skips.values()) * p.stats.cost / answered, 6),
                },
            }
            if spend:
                prompt, completion = self.governor.split_today(name)
                out[name]["spend"] = {
                    **self.governor.spend(f"provider:{name}"),
                    "prompt_tokens_today": prompt,
                    "completion_tokens_today": completion,
                }
        return out

    def budget_status(self) -> dict[str, Any]:
        """The limits of all calls together and what they spent; blocking, as ``status``."""
        return {
            "shared": self.governor.ledger.shared,
            "limits": limits(self.governor.budget),
            "spend": self.governor.spend("all"),
        }

    def close(self) -> None:
        for provider in self.providers.values():
            provider.close()


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
