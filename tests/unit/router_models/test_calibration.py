"""Quantile calibration: thresholds hit the requested large-model share."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from router_models.calibration import NEVER, TABLE_SHARES, calibration_table, threshold_for_share


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
