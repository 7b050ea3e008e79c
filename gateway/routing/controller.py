"""Operator modes on top of the learned score: target large-model share and a spend budget.

Both are pure functions of shared observations, so every replica that sees the same
window computes the same threshold:

* **Target share** (RouteLLM's calibration, applied online): the threshold is the
  ``1 - target`` quantile of the scores of recent traffic, so that share of the window
  scores at or above it. A small integral term corrects what the quantile alone misses
  (ties, failover moving requests between tiers), clamped so it cannot wind up.
* **Budget**: spend on the large tier in the current hour against the hourly cap.
  Past half the budget the threshold rises linearly towards 1, so routing tightens
  before the cap is hit; at the cap the over-budget policy takes over.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["BudgetState", "budget_threshold", "quantile_threshold", "realised_share", "target_threshold"]

#: Fewest scores needed before the target controller trusts the window.
MIN_WINDOW = 20
_INTEGRAL_GAIN = 0.5
_INTEGRAL_LIMIT = 0.2


def quantile_threshold(scores: Sequence[float], large_share: float) -> float:
    """The threshold that sends ``large_share`` of ``scores`` to the large model (``score >= t``)."""
    if not scores:
        raise ValueError("no scores")
    if large_share <= 0:
        return 1.0 if max(scores) < 1.0 else math.nextafter(1.0, 2.0)
    ordered = sorted(scores, reverse=True)
    count = max(1, min(len(ordered), round(large_share * len(ordered))))
    return ordered[count - 1]


def realised_share(decisions: Sequence[bool]) -> float | None:
    """Fraction of ``True`` (sent to the large tier) in a window; ``None`` for an empty one."""
    return sum(decisions) / len(decisions) if decisions else None


def target_threshold(
    scores: Sequence[float], decisions: Sequence[bool], target: float, *, quantile_window: int = 500
) -> float | None:
    """Threshold for the next requests; ``None`` until the window holds enough traffic.

    ``scores`` and ``decisions`` (whether each request went to the large tier) are the
    shared window, newest first. The quantile is taken over the newest
    ``quantile_window`` scores, so it follows a drifting mix quickly; the realised share
    over the whole, longer window nudges it by a bounded integral term.
    """
    if len(scores) < MIN_WINDOW:
        return None
    share = realised_share(decisions)
    correction = 0.0
    if share is not None:
        correction = max(-_INTEGRAL_LIMIT, min(_INTEGRAL_LIMIT, _INTEGRAL_GAIN * (target - share)))
    aim = min(1.0, max(0.0, target + correction))
    return quantile_threshold(scores[:quantile_window], aim)


@dataclass(frozen=True, slots=True)
class BudgetState:
    """Large-tier spend in the current hour against the hourly cap."""

    spent_usd: float
    budget_usd: float
    seconds_left_in_hour: float

    @property
    def used(self) -> float:
        """Fraction of the budget spent (``inf`` for a zero budget with any spend)."""
        if self.budget_usd <= 0:
            return math.inf if self.spent_usd > 0 else 1.0
        return self.spent_usd / self.budget_usd

    @property
    def exhausted(self) -> bool:
        """The cap is reached."""
        return self.used >= 1.0


def budget_threshold(threshold: float, state: BudgetState) -> float:
    """``threshold`` tightened by budget use: unchanged below 50%, rising linearly to 1 at 100%."""
    used = state.used
    if used <= 0.5:
        return threshold
    if used >= 1.0:
        return 1.0
    pressure = (used - 0.5) / 0.5
    return threshold + (1.0 - threshold) * pressure
