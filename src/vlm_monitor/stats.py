"""Small statistics helpers shared by stats endpoints, the worker and the benchmarks."""

from __future__ import annotations

from collections.abc import Iterable


def percentile(values: Iterable[float], q: float, digits: int = 4) -> float | None:
    """Nearest-rank percentile ``q`` (0..100) of ``values``, rounded; None when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))], digits)
