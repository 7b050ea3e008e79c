"""Quantile calibration: thresholds hit the requested large-model share."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from router_models.calibration import NEVER, TABLE_SHARES, calibration_table, threshold_for_share, threshold_from_table


def test_threshold_hits_share() -> None:
    scores = np.random.default_rng(0).random(10_000)
    for share in (0.1, 0.3, 0.5, 0.9):
        t = threshold_for_share(scores, share)
        assert np.mean(scores >= t) == pytest.approx(share, abs=0.002)


def test_extremes_are_exact() -> None:
    scores = np.array([0.0, 0.5, 1.0])
    assert not np.any(scores >= threshold_for_share(scores, 0.0))
    assert threshold_for_share(scores, 0.0) == NEVER > 1.0
    assert np.all(scores >= threshold_for_share(scores, 1.0))
    with pytest.raises(ValueError):
        threshold_for_share(scores, 1.5)
    with pytest.raises(ValueError):
        threshold_for_share([], 0.3)


def test_table_is_monotone_and_complete() -> None:
    table = calibration_table(np.random.default_rng(1).random(500))
    assert [row["large_share"] for row in table] == list(TABLE_SHARES)
    assert len(table) == 21 and TABLE_SHARES[6] == 0.3
    thresholds = [row["threshold"] for row in table]
    assert all(a >= b for a, b in itertools.pairwise(thresholds))


def test_a_stored_table_interpolates_between_its_shares() -> None:
    table = [
        {"large_share": 0.0, "threshold": NEVER},
        {"large_share": 0.5, "threshold": 0.6},
        {"large_share": 1.0, "threshold": 0.0},
    ]
    assert threshold_from_table(table, 0.5) == 0.6
    assert threshold_from_table(table, 0.75) == pytest.approx(0.3)  # halfway from 0.6 to 0.0
    assert threshold_from_table(list(reversed(table)), 0.25) == pytest.approx((NEVER + 0.6) / 2)
    assert threshold_from_table(table, 1.0) == 0.0
    for bad in (-0.1, 1.1):
        with pytest.raises(ValueError, match="large_share"):
            threshold_from_table(table, bad)
    with pytest.raises(ValueError, match="empty"):
        threshold_from_table([], 0.3)
