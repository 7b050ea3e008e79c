"""RouteLLM metrics against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from router_models.metrics import (
    apgr,
    cost_quality_curve,
    cpt,
    oracle_scores,
    random_scores,
    routing_metrics,
)

# Four requests. gain = strong - weak: r0 +1, r1 0 (both right), r2 -1, r3 +1.
WEAK = np.array([False, True, True, False])
STRONG = np.array([True, True, False, True])


def test_curve_points_follow_the_ranking() -> None:
    # Scores rank r0 > r3 > r1 > r2: cumulative gains 0, +1, +2, +2, +1 over n = 4.
    curve = cost_quality_curve([0.9, 0.3, 0.1, 0.8], WEAK, STRONG)
    np.testing.assert_allclose(curve.share, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(curve.accuracy, [0.5, 0.75, 1.0, 1.0, 0.75])
    assert curve.weak_accuracy == 0.5 and curve.strong_accuracy == 0.75


def test_apgr_exact_area() -> None:
    curve = cost_quality_curve([0.9, 0.3, 0.1, 0.8], WEAK, STRONG)
    # PGR = (acc - 0.5) / 0.25 = 0, 1, 2, 2, 1; trapezoids of width 0.25:
    # (0+1)/2 + (1+2)/2 + (2+2)/2 + (2+1)/2 = 0.5 + 1.5 + 2 + 1.5 = 5.5 -> times 0.25 = 1.375
    assert apgr(curve) == pytest.approx(1.375)


def test_cpt_interpolates_linearly() -> None:
    curve = cost_quality_curve([0.9, 0.3, 0.1, 0.8], WEAK, STRONG)
    # 50% of the gap = accuracy 0.625, halfway between share 0 (0.5) and 0.25 (0.75) → 0.125.
    assert cpt(curve, 0.5) == pytest.approx(0.125)
    # 80% = 0.7 → 0.2 of the way from 0.5 to 0.75 in accuracy → share 0.2.
    assert cpt(curve, 0.8) == pytest.approx(0.2)
    assert cpt(curve, 0.0) == 0.0


def test_worst_ranking_and_ties() -> None:
    # Reverse order: r2 first (-1), then r1 (0), then r0/r3.
    worst = cost_quality_curve([0.2, 0.5, 0.9, 0.1], WEAK, STRONG)
    np.testing.assert_allclose(worst.accuracy, [0.5, 0.25, 0.25, 0.5, 0.75])
    # PGR: 0,-1,-1,0,1 → areas (-0.5,-1,-0.5,0.5) times 0.25 = -0.375
    assert apgr(worst) == pytest.approx(-0.375)
    # CPT(50%) = 0.625 reached between shares 0.75 (0.5) and 1.0 (0.75) → 0.875.
    assert cpt(worst, 0.5) == pytest.approx(0.875)
    # All scores tied = routing a random fraction = straight line, APGR exactly 0.5.
    tied = cost_quality_curve([0.5] * 4, WEAK, STRONG)
    np.testing.assert_allclose(tied.share, [0.0, 1.0])
    assert apgr(tied) == pytest.approx(0.5)
    assert cpt(tied, 0.5) == pytest.approx(0.5)


def test_no_gap_gives_nan() -> None:
    m = routing_metrics([0.1, 0.2], [True, False], [True, False])
    assert math.isnan(m.apgr) and math.isnan(m.cpt50)


def test_baselines() -> None:
    rng = np.random.default_rng(0)
    weak = rng.random(4000) < 0.6
    strong = rng.random(4000) < 0.8
    o = routing_metrics(oracle_scores(weak, strong), weak, strong)
    r = routing_metrics(random_scores(4000, 99), weak, strong)
    assert o.apgr > 1.0 and o.cpt50 < 0.2
    assert 0.45 < r.apgr < 0.55
    # The oracle recovers gap at one request per routed "needed" prompt: CPT(50%) = gap/2.
    gap = strong.mean() - weak.mean()
    assert o.cpt50 == pytest.approx(gap / 2, abs=1e-9)


def test_input_validation() -> None:
    with pytest.raises(ValueError):
        cost_quality_curve([0.1], [True, False], [True, True])
    with pytest.raises(ValueError):
        cost_quality_curve([float("nan")], [True], [False])


def test_ensemble_percentiles_keep_order_out_of_range() -> None:
    from router_models.percentile import percentile_table, squash, to_percentile

    table = percentile_table(np.linspace(0.2, 0.6, 500))
    xs = np.array([-1.0, 0.0, 0.1, 0.2, 0.4, 0.6, 0.7, 1.0, 5.0])
    p = to_percentile(xs, table)
    assert np.all(np.diff(p) > 0)  # no ties beyond the held-out range
    assert p[4] == pytest.approx(0.5, abs=0.01)
    s = squash(np.array([-100.0, -1.0, 0.0, 0.5, 1.0, 2.0, 100.0]))
    assert np.all((s >= 0) & (s <= 1)) and np.all(np.diff(s[1:-1]) > 0)
    assert s[3] == pytest.approx(0.5)


def test_a_component_constant_on_held_out_prompts_stays_neutral() -> None:
    # Boosted trees fitted on too few rows are constant; a value off that constant must not be
    # extrapolated from a zero-width table (it came out as 1e8 and swamped the other members).
    from router_models.percentile import percentile_table, to_percentile

    flat = percentile_table(np.full(40, 0.3))
    np.testing.assert_array_equal(to_percentile(np.array([0.0, 0.3, 0.31, 1.0]), flat), [0.5, 0.5, 0.5, 0.5])
