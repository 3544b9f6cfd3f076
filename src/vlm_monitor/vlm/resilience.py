"""Per-provider protection: concurrency limit, calls-per-minute budget, retries with back-off
(honouring Retry-After), circuit breaker; and groups of providers (round robin or fallback)."""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from vlm_monitor.sources.backoff import backoff_delay
from vlm_monitor.vlm.base import Provider, ProviderError, VlmAnswer, VlmRequest

log = logging.getLogger("vlm_monitor.vlm")


@dataclass
class ProviderStats:
    calls: int = 0
    failures: int = 0
    retries: int = 0
    rejected_budget: int = 0
    rejected_open: int = 0
    tokens: int = 0


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
    ) -> None:
        self.inner, self.name = inner, inner.name
        self.retries, self.max_retry_wait_s = retries, max_retry_wait_s
        self.calls_per_minute = calls_per_minute
        self.breaker_failures, self.breaker_reset_s = breaker_failures, breaker_reset_s
        self.stats = ProviderStats()
        # (provider, seconds, ok) per request, on the calling thread: latency histograms.
        self.listeners: list[Callable[[str, float, bool], None]] = []
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self._recent_calls: collections.deque[float] = collections.deque()
        self._consecutive_failures = 0
        self._open_until = 0.0
        self._call_times: collections.deque[tuple[float, int]] = collections.deque()

    @property
    def breaker_open(self) -> bool:
        return time.monotonic() < self._open_until

    def _admit(self) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._open_until:
                self.stats.rejected_open += 1
                raise ProviderError(
                    f"{self.name}: circuit open for another "
                    f"{self._open_until - now:.0f} s after repeated failures"
                )
            while self._recent_calls and now - self._recent_calls[0] > 60:
                self._recent_calls.popleft()
            if (
                self.calls_per_minute is not None
                and len(self._recent_calls) >= self.calls_per_minute
            ):
                self.stats.rejected_budget += 1
                raise ProviderError(
                    f"{self.name}: budget of {self.calls_per_minute} calls/min used"
                )
            self._recent_calls.append(now)

    def _record(self, ok: bool, tokens: int = 0) -> None:
        with self._lock:
            self.stats.calls += 1
            self.stats.tokens += tokens
            self._call_times.append((time.monotonic(), tokens))
            if ok:
                self._consecutive_failures = 0
                return
            self.stats.failures += 1
            self._consecutive_failures += 1
            if self._consecutive_failures >= self.breaker_failures:
                self._open_until = time.monotonic() + self.breaker_reset_s
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
        attempt = 0
        while True:
            self._admit()
            with self._slots:
                started = time.monotonic()
                try:
                    answer = self.inner.analyze(request)
                except ProviderError as exc:
                    self._heard(time.monotonic() - started, False)
                    self._record(False)
                    if not exc.retryable or attempt >= self.retries:
                        raise
                    error = exc
                else:
                    self._heard(time.monotonic() - started, True)
                    self._record(True, answer.tokens)
                    return answer
            attempt += 1
            self.stats.retries += 1
            wait = (
                error.retry_after
                if error.retry_after is not None
                else backoff_delay(attempt, 0.5, 8.0, 0.2)
            )
            time.sleep(min(wait, self.max_retry_wait_s))

    def _heard(self, seconds: float, ok: bool) -> None:
        for listener in self.listeners:
            try:
                listener(self.name, seconds, ok)
            except Exception:  # a metrics bug must not fail the call
                log.exception("provider listener failed", extra={"fields": {"provider": self.name}})

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
        errors = []
        for provider in order:
            try:
                return provider.name, provider.analyze(request)
            except ProviderError as exc:
                errors.append(str(exc))
        raise ProviderError(" | ".join(errors))
