"""The target-share controller and the budget tightening, on synthetic streams."""

from __future__ import annotations

import random
from collections import deque

import pytest

from gateway.routing.controller import (
    BudgetState,
    budget_threshold,
    quantile_threshold,
    realised_share,
    target_threshold,
)


def test_quantile_threshold_sends_the_share() -> None:
    scores = [i / 100 for i in range(100)]
    t = quantile_threshold(scores, 0.25)
    assert sum(s >= t for s in scores) == 25
    assert quantile_threshold(scores, 1.0) == 0.0
    assert sum(s >= quantile_threshold(scores, 0.0) for s in scores) == 0
    with pytest.raises(ValueError):
        quantile_threshold([], 0.5)


def test_target_needs_a_window() -> None:
    assert target_threshold([0.5] * 5, [True] * 5, 0.3) is None
    assert realised_share([]) is None


@pytest.mark.parametrize("target", [0.1, 0.25, 0.5])
def test_controller_holds_the_target_while_the_mix_drifts(target: float) -> None:
    rng = random.Random(3)
    window = 2000  # the shared window's length (newest first, as in Redis)
    scores: deque[float] = deque(maxlen=window)
    decisions: deque[bool] = deque(maxlen=window)
    threshold = 0.5
    worst = 0.0
    total = 20_000
    for step in range(total):
        hard_fraction = 0.2 + 0.5 * step / total  # the traffic gets harder over time
        score = rng.betavariate(5, 2) if rng.random() < hard_fraction else rng.betavariate(2, 5)
        scores.appendleft(score)
        decisions.appendleft(score >= threshold)
        if step % 25 == 0:  # replicas recompute about once a second
            new = target_threshold(list(scores), list(decisions), target)
            threshold = threshold if new is None else new
        if step > 2 * window and step % 500 == 0:
            share = realised_share(list(decisions))
            assert share is not None
            worst = max(worst, abs(share - target))
    assert worst <= 0.02, worst


def test_budget_tightens_then_caps() -> None:
    def state(spent: float) -> BudgetState:
        return BudgetState(spent_usd=spent, budget_usd=10.0, seconds_left_in_hour=600)

    assert budget_threshold(0.3, state(4.0)) == 0.3
    assert budget_threshold(0.3, state(7.5)) == pytest.approx(0.65)
    assert budget_threshold(0.3, state(10.0)) == 1.0
    assert state(10.0).exhausted and not state(9.99).exhausted
    assert BudgetState(0.01, 0.0, 10).exhausted
