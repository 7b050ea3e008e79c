"""Threshold calibration (RouteLLM's quantile method).

A router sends a request to the large model when ``score >= threshold``. To send a share ``s``
of a reference prompt set to the large model, the threshold is the ``1 - s`` quantile of the
router's scores on that set. Share 0 maps to a threshold above every possible score (scores are
in [0, 1]) and share 1 to 0.0, so the two extremes are exact for any prompt.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from router_models.base import Router
from router_models.conversation import ChatTurn, as_conversation

DEFAULT_LARGE_SHARE = 0.3
#: Shares stored in every artifact's calibration table: 0.00, 0.05, ..., 1.00.
TABLE_SHARES: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(21))
#: Threshold meaning "never the large model": just above the maximum score 1.0.
NEVER = math.nextafter(1.0, 2.0)


def threshold_for_share(scores: npt.ArrayLike, large_share: float) -> float:
    """Threshold sending ``large_share`` of ``scores`` to the large model (``score >= t``)."""
    if not 0.0 <= large_share <= 1.0:
        raise ValueError(f"large_share must be in [0, 1], got {large_share}")
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        raise ValueError("need at least one reference score to calibrate")
    if large_share <= 0.0:
        return NEVER
    if large_share >= 1.0:
        return 0.0
    return float(np.quantile(s, 1.0 - large_share))


def calibration_table(scores: npt.ArrayLike, shares: Sequence[float] = TABLE_SHARES) -> list[dict[str, float]]:
    """``[{"large_share": s, "threshold": t}, ...]`` for each share (JSON-friendly)."""
    return [{"large_share": float(s), "threshold": threshold_for_share(scores, s)} for s in shares]


def threshold_from_table(table: Sequence[Mapping[str, float]], large_share: float) -> float:
    """The threshold for ``large_share`` on a stored calibration table (:func:`calibration_table`'s
    rows), by linear interpolation between its shares."""
    if not 0.0 <= large_share <= 1.0:
        raise ValueError(f"large_share must be in [0, 1], got {large_share}")
    rows = sorted(table, key=lambda row: row["large_share"])
    if not rows:
        raise ValueError("the calibration table is empty")
    # Shares increase along the table (thresholds decrease), so np.interp applies directly.
    shares = np.asarray([row["large_share"] for row in rows], dtype=np.float64)
    thresholds = np.asarray([row["threshold"] for row in rows], dtype=np.float64)
    return float(np.interp(large_share, shares, thresholds))


def _as_conversations(
    prompts: Sequence[str] | Sequence[Sequence[ChatTurn]],
) -> list[Sequence[ChatTurn]]:
    return [as_conversation(p) if isinstance(p, str) else p for p in prompts]


def calibrate(
    router: Router,
    reference_prompts: Sequence[str] | Sequence[Sequence[ChatTurn]],
    large_share: float = DEFAULT_LARGE_SHARE,
) -> float:
    """Threshold for ``router`` that sends ``large_share`` of ``reference_prompts`` to the large model.

    ``reference_prompts`` are plain user prompts or whole conversations; use traffic that looks
    like production (the share on other traffic will differ).
    """
    scores = router.score_many(_as_conversations(reference_prompts))
    return threshold_for_share(scores, large_share)


def calibrate_table(
    router: Router,
    reference_prompts: Sequence[str] | Sequence[Sequence[ChatTurn]],
    shares: Sequence[float] = TABLE_SHARES,
) -> list[dict[str, float]]:
    """Full share → threshold table for ``router`` on ``reference_prompts``."""
    return calibration_table(router.score_many(_as_conversations(reference_prompts)), shares)
