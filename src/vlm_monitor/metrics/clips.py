"""Clips and the VLM providers behind them: pipeline counters, lag, budgets and breakers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class ClipCollector(Collector):
    def __init__(
        self,
        streams: Callable[[], list[str]],
        status: Callable[[str], dict[str, Any] | None],
        providers: Callable[[], dict[str, dict[str, Any]]],
    ) -> None:
        """``status(stream)``: the clip processor's statistics, None without clips;
        ``providers()``: each VLM provider's status."""
        self.streams, self.status, self.providers = streams, status, providers

    def collect(self) -> Iterator[Metric]:
        clip_counts = CounterMetricFamily(
            "vlm_clips", "clip pipeline counters", labels=["stream", "counter"]
        )
        lag = GaugeMetricFamily(
            "vlm_clip_lag_seconds", "clip end -> inference start", labels=["stream"]
        )
        skipped = CounterMetricFamily(
            "vlm_clips_skipped",
            "clips that got no VLM call: duplicate (like the last analysed one), still "
            "(under min_motion), disk_full, budget (a VLM budget was spent)",
            labels=["stream", "reason"],
        )
        for sid in self.streams():
            stats = self.status(sid)
            if stats is None:
                continue
            for key, value in stats.items():
                if isinstance(value, int):
                    clip_counts.add_metric([sid, key], value)
            for reason, value in (stats.get("skipped") or {}).items():
                skipped.add_metric([sid, reason], value)
            lag.add_metric([sid], stats["lag_s"])
        per_min = GaugeMetricFamily(
            "vlm_provider_per_minute",
            "VLM calls and tokens, last 60 s",
            labels=["provider", "what"],
        )
        breaker = GaugeMetricFamily(
            "vlm_provider_circuit_open", "1 while the circuit is open", labels=["provider"]
        )
        state = GaugeMetricFamily(
            "vlm_provider_circuit_state",
            "1 for the circuit's state: closed, open or half_open",
            labels=["provider", "state"],
        )
        tokens = CounterMetricFamily(
            "vlm_provider_tokens",
            "tokens spent, as the provider reports them",
            labels=["provider", "kind"],
        )
        cost = CounterMetricFamily(
            "vlm_provider_cost", "cost at the configured prices per 1k tokens", labels=["provider"]
        )
        rejected = CounterMetricFamily(
            "vlm_provider_rejected",
            "calls not made: budget spent, or circuit open",
            labels=["provider", "reason"],
        )
        saved = GaugeMetricFamily(
            "vlm_provider_saved_estimate",
            "tokens and cost the skipped clips would have spent (average per answered call)",
            labels=["provider", "what"],
        )
        for name, st in self.providers().items():
            per_min.add_metric([name, "calls"], st["calls_per_min"])
            per_min.add_metric([name, "tokens"], st["tokens_per_min"])
            breaker.add_metric([name], 1.0 if st["circuit_open"] else 0.0)
            for circuit in ("closed", "open", "half_open"):
                state.add_metric([name, circuit], 1.0 if st["circuit"] == circuit else 0.0)
            tokens.add_metric([name, "prompt"], st["prompt_tokens"])
            tokens.add_metric([name, "completion"], st["completion_tokens"])
            cost.add_metric([name], st["cost"])
            rejected.add_metric([name, "budget"], st["rejected_budget"])
            rejected.add_metric([name, "circuit"], st["rejected_open"])
            saved.add_metric([name, "tokens"], st["savings"]["tokens_est"])
            saved.add_metric([name, "cost"], st["savings"]["cost_est"])
        yield from (
            clip_counts,
            skipped,
            lag,
            per_min,
            breaker,
            state,
            tokens,
            cost,
            rejected,
            saved,
        )
