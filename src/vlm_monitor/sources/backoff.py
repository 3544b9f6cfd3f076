"""Exponential back-off with jitter."""

from __future__ import annotations

import random


def backoff_delay(
    attempt: int, initial_s: float, max_s: float, jitter: float, rng: random.Random | None = None
) -> float:
    """Seconds before retry ``attempt`` (1-based): initial * 2^(n-1), capped, +/- jitter."""
    base = min(max_s, initial_s * 2.0 ** max(0, attempt - 1))
    spread: float = (rng or random).uniform(-jitter, jitter)
    return max(0.0, base * (1 + spread))
