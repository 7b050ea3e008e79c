"""Latency figures shared by the small-tier benchmarks."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

__all__ = ["p50_p95"]


def p50_p95(latencies: Sequence[float]) -> tuple[float, float]:
    """The median and the nearest-rank 95th percentile of ``latencies`` (at least one)."""
    ordered = sorted(latencies)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
