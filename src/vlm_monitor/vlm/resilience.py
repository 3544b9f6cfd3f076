"""Per-provider protection: concurrency limit, budgets (``budget.Governor``), retries with back-off
(honouring Retry-After), circuit breaker; and groups of providers (round robin or fallback).

The breaker counts only failures that say the provider is in trouble (5xx, 408, 429,
timeouts, connection errors): a 400 earned by one stream's request leaves it closed for the
others. ``breaker_failures`` of those in a row open it; after ``breaker_reset_s`` it is
half-open and lets exactly one call through as a probe: success closes it, a failure opens
it again for another ``breaker_reset_s``. Calls while open or probing fail at once."""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from vlm_monitor.sources.backoff import backoff_delay
from vlm_monitor.vlm.base import (
    BudgetSpent,
    Provider,
    ProviderError,
    StructuredAnswerError,
    VlmAnswer,
    VlmRequest,
)
from vlm_monitor.vlm.budget import Governor, Prices
from vlm_monitor.vlm.frames import Plan
from vlm_monitor.vlm.structured import answer_structured

log = logging.getLogger("vlm_monitor.vlm")
Auditor = Callable[[str, VlmRequest, VlmAnswer | None, str | None, float], None]


@dataclass
class ProviderStats:
    calls: int = 0
    failures: int = 0
    retries: int = 0
    rejected_budget: int = 0
    rejected_open: int = 0
    tokens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0  # at the configured prices


class GuardedProvider:
    """Thread-safe wrapper of one provider."""

    def __init__(
        self,
        inner: Provider,
        concurrency: int = 2,
        calls_per_minute: int | None = None,
        retries: int = 2,
        breaker_failures: int = 5,
        breaker_reset_s: float = 30.0,
        max_retry_wait_s: float = 30.0,
        prices: Prices | None = None,
    ) -> None:
        self.inner, self.name = inner, inner.name
        self.retries, self.max_retry_wait_s = retries, max_retry_wait_s
        self.calls_per_minute = calls_per_minute
        self.breaker_failures, self.breaker_reset_s = breaker_failures, breaker_reset_s
        self.stats = ProviderStats()
        # (provider, seconds, ok) per request, on the calling thread: latency histograms.
        self.listeners: list[Callable[[str, float, bool], None]] = []
        # (provider, request, answer or None, error or None, seconds) per answered question.
        self.auditors: list[Auditor] = []
        # Budgets and spend; ProviderSet gives all its providers one (vlm.budget, shared).
        self.governor = Governor()
        self.prices = prices or Prices()
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self._consecutive_failures = 0
        self._open = False
        self._open_until = 0.0
        self._probing = False  # half-open: the one probe call is in flight
        self._call_times: collections.deque[tuple[float, int]] = collections.deque()

    @property
    def breaker_open(self) -> bool:
        return self.breaker_state != "closed"

    @property
    def breaker_state(self) -> str:
        """``closed``, ``open`` or ``half_open`` (a probe may go, or is in flight)."""
        if not self._open:
            return "closed"
        return "half_open" if self._probing or time.monotonic() >= self._open_until else "open"

    def _admit(self, request: VlmRequest) -> bool:
        """Raises when the call may not go (circuit, budgets); True when it goes as the
        half-open probe."""
        now = time.monotonic()
        probe = False
        with self._lock:
            if self._open and (self._probing or now < self._open_until):
                self.stats.rejected_open += 1
                wait = (
                    "a probe call is in flight"
                    if self._probing
                    else f"another {self._open_until - now:.0f} s"
                )
                raise ProviderError(f"{self.name}: circuit open after repeated failures: {wait}")
            if self._open:
                self._probing = probe = True
        try:  # outside the lock: the ledger may ask Redis
            self.governor.admit(self.name, self.calls_per_minute, request.stream, request.budget)
        except BudgetSpent:
            with self._lock:
                self.stats.rejected_budget += 1
                if probe:
                    self._probing = False
            raise
        return probe

    def _record(self, ok: bool, fault: bool, probe: bool, answer: VlmAnswer | None = None) -> None:
        """``fault``: a failure that counts against the provider (see the module doc)."""
        tokens = 0 if answer is None else answer.tokens
        with self._lock:
            self.stats.calls += 1
            self.stats.tokens += tokens
            if answer is not None:
                self.stats.prompt_tokens += answer.prompt_tokens
                self.stats.completion_tokens += answer.completion_tokens
                self.stats.cost += answer.cost
            self._call_times.append((time.monotonic(), tokens))
            if not ok:
                self.stats.failures += 1
            if probe:
                self._probing = False
            if ok or not fault:
                if ok:
                    self._consecutive_failures = 0
                if probe:  # it answered, so it is reachable again
                    self._open = False
                    log.info("provider circuit closed", extra={"fields": {"provider": self.name}})
                return
            self._consecutive_failures += 1
            if probe or self._consecutive_failures >= self.breaker_failures:
                self._open, self._open_until = True, time.monotonic() + self.breaker_reset_s
                self._consecutive_failures = 0
                log.warning(
                    "provider circuit opened",
                    extra={"fields": {"provider": self.name, "for_s": self.breaker_reset_s}},
                )

    def per_minute(self) -> tuple[int, int]:
        """(calls, tokens) in the last 60 s."""
        now = time.monotonic()
        with self._lock:
            while self._call_times and now - self._call_times[0][0] > 60:
                self._call_times.popleft()
            return len(self._call_times), sum(t for _, t in self._call_times)

    def analyze(self, request: VlmRequest) -> VlmAnswer:
        """The answer; with a schema, validated (one repair retry, see ``structured``)."""
        if not self.auditors:
            return answer_structured(self._call, request)
        started = time.monotonic()
        try:
            answer = answer_structured(self._call, request)
        except ProviderError as exc:
            failed = exc.answer if isinstance(exc, StructuredAnswerError) else None
            self._audit(request, failed, str(exc), time.monotonic() - started)
            raise
        self._audit(request, answer, None, time.monotonic() - started)
        return answer

    def _audit(
        self, request: VlmRequest, answer: VlmAnswer | None, error: str | None, seconds: float
    ) -> None:
        for auditor in self.auditors:
            auditor(self.name, request, answer, error, seconds)

    def _call(self, request: VlmRequest) -> VlmAnswer:
        attempt = 0
        while True:
            probe = self._admit(request)
            with self._slots:
                started = time.monotonic()
                try:
                    answer = self.inner.analyze(request)
                except ProviderError as exc:
                    self._heard(time.monotonic() - started, False)
                    self._record(False, exc.provider_fault, probe)
                    if not exc.retryable or attempt >= self.retries:
                        raise
                    error = exc
                except BaseException:
                    # A provider's own bug says nothing about the service; a probe slot must
                    # not stay taken by it, or the circuit would never close again.
                    self._record(False, False, probe)
                    raise
                else:
                    self._heard(time.monotonic() - started, True)
                    answer.cost = self._charge(request, answer)
                    self._record(True, False, probe, answer)
                    return answer
            attempt += 1
            self.stats.retries += 1
            wait = (
                error.retry_after
                if error.retry_after is not None
                else backoff_delay(attempt, 0.5, 8.0, 0.2)
            )
            time.sleep(min(wait, self.max_retry_wait_s))

    def _charge(self, request: VlmRequest, answer: VlmAnswer) -> float:
        try:
            return self.governor.charge(
                self.name,
                request.stream,
                answer.prompt_tokens,
                answer.completion_tokens,
                self.prices,
            )
        except Exception:  # counting must not lose an answer that was paid for
            log.exception("VLM spend not counted", extra={"fields": {"provider": self.name}})
            return self.prices.cost(answer.prompt_tokens, answer.completion_tokens)

    def _heard(self, seconds: float, ok: bool) -> None:
        for listener in self.listeners:
            try:
                listener(self.name, seconds, ok)
            except Exception:  # a metrics bug must not fail the call
                log.exception("provider listener failed", extra={"fields": {"provider": self.name}})

    def frame_plan(self, request: VlmRequest, count: int, size: tuple[int, int]) -> Plan | None:
        """What the provider would send of ``count`` frames of ``size`` (see ``frames``);
        None for a provider that takes no pictures. Raises FrameBudgetError."""
        planner = getattr(self.inner, "frame_plan", None)
        return None if planner is None else cast(Plan, planner(request, count, size))

    def close(self) -> None:
        self.inner.close()


class ProviderGroup:
    """Several providers as one: ``round_robin`` spreads calls, ``fallback`` tries in order."""

    def __init__(self, providers: list[GuardedProvider], strategy: str = "fallback") -> None:
        if not providers:
            raise ValueError("a provider group needs at least one provider")
        if strategy not in ("fallback", "round_robin"):
            raise ValueError(f"unknown strategy {strategy!r}: use fallback or round_robin")
        self.providers, self.strategy = providers, strategy
        self.name = "+".join(p.name for p in providers)
        self._next = itertools.cycle(range(len(providers)))
        self._lock = threading.Lock()

    def analyze(self, request: VlmRequest) -> tuple[str, VlmAnswer]:
        """Answer and the name of the provider that gave it."""
        if self.strategy == "round_robin":
            with self._lock:
                start = next(self._next)
            order = self.providers[start:] + self.providers[:start]
        else:
            order = self.providers
        errors: list[ProviderError] = []
        for provider in order:
            try:
                return provider.name, provider.analyze(request)
            except ProviderError as exc:
                errors.append(exc)
        if len(errors) == 1:  # as it was: the caller may want what it carries (the answer)
            raise errors[0]
        message = " | ".join(map(str, errors))
        if all(isinstance(e, BudgetSpent) for e in errors):
            raise BudgetSpent(message)
        raise ProviderError(message)
