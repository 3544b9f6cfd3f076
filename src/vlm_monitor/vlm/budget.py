"""The cost governor: VLM calls, tokens and cost counted per provider, per stream and for all
calls together, and limits on them (``calls_per_minute``, ``tokens_per_hour``,
``cost_per_day``).

Counters live in a ledger: in this process, or on Redis shared by every server and worker of
one deployment (each node's own count would let N nodes spend N budgets). Windows are fixed:
the calendar minute, hour and UTC day (a counter per scope and window, with an expiry):
simple and exact within a window, at the price of a burst of up to twice a budget across a
window's boundary. A call is admitted by checking every limit and counting it in one step
(a Lua script on Redis), so a refused call spends nothing. Tokens and cost are known only
once the answer is in: they are added then, and a limit refuses the calls after the one that
reached it. When Redis does not answer, the node counts on its own until it is back."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import redis

from vlm_monitor.config import BudgetConfig
from vlm_monitor.vlm.base import BudgetSpent

log = logging.getLogger("vlm_monitor.vlm")
MINUTE, HOUR, DAY = 60, 3600, 86400
LIMITS = (
    ("calls_per_minute", "calls", MINUTE),
    ("tokens_per_hour", "tokens", HOUR),
    ("cost_per_day", "cost", DAY),
)
UNITS = {"calls": "calls/min", "tokens": "tokens/hour", "cost": "cost/day"}

# KEYS: counters; ARGV: (limit or -1, increment, ttl) per key. Returns the 1-based index of
# the first counter whose limit the call would pass (nothing is counted then), or 0.
TAKE_SCRIPT = """
for i, key in ipairs(KEYS) do
  local limit, inc = tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1])
  local value = tonumber(redis.call('GET', key) or '0')
  if limit >= 0 and ((inc > 0 and value + inc > limit) or (inc == 0 and value >= limit)) then
    return i
  end
end
for i, key in ipairs(KEYS) do
  local inc = tonumber(ARGV[3 * i - 1])
  if inc > 0 then
    redis.call('INCRBYFLOAT', key, inc)
    redis.call('EXPIRE', key, ARGV[3 * i])
  end
end
return 0
"""


@dataclass(frozen=True)
class Charge:
    """``amount`` added to the counter ``name`` in its current ``window_s`` window; with a
    ``limit``, refused when it would pass it (an amount of 0 only checks: refused once the
    counter reached the limit)."""

    name: str
    window_s: int
    amount: float
    limit: float | None = None

    def refuses(self, value: float) -> bool:
        if self.limit is None:
            return False
        return value + self.amount > self.limit if self.amount > 0 else value >= self.limit


class Ledger(Protocol):
    def take(self, charges: list[Charge]) -> int:
        """Index of the first charge refused (then none is counted), or -1: all counted."""

    def add(self, charges: list[Charge]) -> None: ...

    def read(self, counters: list[tuple[str, int]]) -> list[float]:
        """The current window's value of each (name, window_s)."""

    @property
    def shared(self) -> bool: ...


def _window(window_s: int, now: float) -> int:
    return int(now // window_s)


class LocalLedger:
    """This process's counters. Thread-safe."""

    shared = False

    def __init__(self) -> None:
        self._values: dict[tuple[str, int, int], float] = {}
        self._lock = threading.Lock()

    def take(self, charges: list[Charge]) -> int:
        now = time.time()
        with self._lock:
            self._expire(now)
            for i, c in enumerate(charges):
                if c.refuses(self._values.get((c.name, c.window_s, _window(c.window_s, now)), 0)):
                    return i
            self._add(charges, now)
        return -1

    def add(self, charges: list[Charge]) -> None:
        with self._lock:
            self._add(charges, time.time())

    def read(self, counters: list[tuple[str, int]]) -> list[float]:
        now = time.time()
        with self._lock:
            return [self._values.get((n, w, _window(w, now)), 0.0) for n, w in counters]

    def _add(self, charges: list[Charge], now: float) -> None:
        for c in charges:
            if c.amount:
                key = (c.name, c.window_s, _window(c.window_s, now))
                self._values[key] = self._values.get(key, 0.0) + c.amount

    def _expire(self, now: float) -> None:
        old = [k for k in self._values if k[2] < _window(k[1], now)]
        for key in old:
            del self._values[key]


class SharedLedger:
    """Counters on Redis, under ``{channel}:vlm-budget:``; a LocalLedger while Redis does not
    answer."""

    shared = True

    def __init__(self, client: redis.Redis, channel: str) -> None:
        self.client, self.channel = client, channel
        self.local = LocalLedger()
        self._take = client.register_script(TAKE_SCRIPT)
        self._warned = False
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, channel: str) -> SharedLedger:
        return cls(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1), channel)

    def _key(self, name: str, window_s: int, now: float) -> str:
        return f"{self.channel}:vlm-budget:{name}:{window_s}:{_window(window_s, now)}"

    def take(self, charges: list[Charge]) -> int:
        now = time.time()
        args: list[Any] = []
        for c in charges:
            args += [-1 if c.limit is None else c.limit, c.amount, 2 * c.window_s]
        try:
            refused = int(
                self._take(keys=[self._key(c.name, c.window_s, now) for c in charges], args=args)
            )
        except (redis.RedisError, OSError) as exc:
            self._unreachable(exc)
            return self.local.take(charges)
        self._reachable()
        return refused - 1

    def add(self, charges: list[Charge]) -> None:
        now = time.time()
        try:
            pipe = self.client.pipeline()
            for c in charges:
                if c.amount:
                    key = self._key(c.name, c.window_s, now)
                    pipe.incrbyfloat(key, c.amount)
                    pipe.expire(key, 2 * c.window_s)
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self._unreachable(exc)
            self.local.add(charges)
            return
        self._reachable()

    def read(self, counters: list[tuple[str, int]]) -> list[float]:
        now = time.time()
        try:
            values = self.client.mget([self._key(n, w, now) for n, w in counters])
        except (redis.RedisError, OSError) as exc:
            self._unreachable(exc)
            return self.local.read(counters)
        self._reachable()
        return [float(v) if v is not None else 0.0 for v in values]

    def _unreachable(self, exc: BaseException) -> None:
        with self._lock:
            if not self._warned:
                self._warned = True
                log.warning(
                    "shared VLM budget unreachable: counting on this node only",
                    extra={"fields": {"error": str(exc)}},
                )

    def _reachable(self) -> None:
        with self._lock:
            self._warned = False


@dataclass(frozen=True)
class Prices:
    input_per_1k: float = 0.0
    output_per_1k: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_1k + completion_tokens * self.output_per_1k) / 1000


class Governor:
    """Admits or refuses each call, and counts what it spent. One per ProviderSet (its
    providers share ``budget``, the limits of all calls together). Thread-safe; the ledger may
    block on Redis for up to its socket timeout: call from the providers' threads."""

    def __init__(self, budget: BudgetConfig | None = None, ledger: Ledger | None = None) -> None:
        self.budget = budget or BudgetConfig()
        self.ledger: Ledger = ledger or LocalLedger()

    def admit(
        self, provider: str, calls_per_minute: int | None, stream: str, stream_budget: BudgetConfig
    ) -> None:
        """Counts the call, or raises BudgetSpent naming the budget that is used up."""
        charges: list[Charge] = []
        scopes = [
            ("all", self.budget),
            (f"provider:{provider}", BudgetConfig(calls_per_minute=calls_per_minute)),
        ]
        if stream:
            scopes.append((f"stream:{stream}", stream_budget))
        for scope, budget in scopes:
            for key, what, window in LIMITS:
                limit = getattr(budget, key)
                if what == "calls":
                    charges.append(Charge(f"{scope}:calls", window, 1, limit))
                elif limit is not None:  # tokens and cost are added after the answer
                    charges.append(Charge(f"{scope}:{what}", window, 0, limit))
        charges += [Charge(f"{scope}:calls", DAY, 1) for scope, _ in scopes]  # calls today
        refused = self.ledger.take(charges)
        if refused >= 0:
            raise BudgetSpent(_describe(charges[refused], provider))

    def charge(
        self, provider: str, stream: str, prompt_tokens: int, completion_tokens: int, prices: Prices
    ) -> float:
        """Adds an answer's tokens and cost to every scope it counts in; its cost."""
        cost = prices.cost(prompt_tokens, completion_tokens)
        tokens = prompt_tokens + completion_tokens
        charges = [
            Charge(f"provider:{provider}:prompt_tokens", DAY, prompt_tokens),
            Charge(f"provider:{provider}:completion_tokens", DAY, completion_tokens),
        ]
        for scope in ("all", f"provider:{provider}", *([f"stream:{stream}"] if stream else [])):
            charges += [
                Charge(f"{scope}:tokens", HOUR, tokens),
                Charge(f"{scope}:tokens", DAY, tokens),
                Charge(f"{scope}:cost", DAY, cost),
            ]
        if tokens or cost:
            self.ledger.add(charges)
        return cost

    def spend(self, scope: str) -> dict[str, float]:
        """What ``scope`` (``all``, ``provider:NAME``, ``stream:ID``) spent in the current
        windows: calls this minute, tokens this hour, and calls, tokens and cost today (UTC)."""
        counters = [
            (f"{scope}:calls", MINUTE),
            (f"{scope}:tokens", HOUR),
            (f"{scope}:calls", DAY),
            (f"{scope}:tokens", DAY),
            (f"{scope}:cost", DAY),
        ]
        minute, hour, calls, tokens, cost = self.ledger.read(counters)
        return {
            "calls_this_minute": int(minute),
            "tokens_this_hour": int(hour),
            "calls_today": int(calls),
            "tokens_today": int(tokens),
            "cost_today": round(cost, 6),
        }

    def split_today(self, provider: str) -> tuple[int, int]:
        """(prompt, completion) tokens ``provider`` spent today."""
        prompt, completion = self.ledger.read(
            [
                (f"provider:{provider}:prompt_tokens", DAY),
                (f"provider:{provider}:completion_tokens", DAY),
            ]
        )
        return int(prompt), int(completion)


def limits(budget: BudgetConfig) -> dict[str, float | None]:
    return {key: getattr(budget, key) for key, _, _ in LIMITS}


def _describe(charge: Charge, provider: str) -> str:
    scope, what = charge.name.rsplit(":", 1)
    if scope == f"provider:{provider}":
        who = provider  # as ever: "qwen: budget of 30 calls/min used"
    elif scope == "all":
        who = "all VLM calls (vlm.budget)"
    else:
        who = f"stream {scope.split(':', 1)[1]} (clips.budget)"
    limit = charge.limit if what == "cost" else int(charge.limit or 0)
    return f"{who}: budget of {limit:g} {UNITS[what]} used"
