"""RouteLLM cost/quality metrics: accuracy vs large-model share, CPT(x%) and APGR.

Definitions (Ong et al., 2024, "RouteLLM"): a routed request is worth the correctness of the model
it is sent to. Sweeping the threshold over a score gives a curve of accuracy against the share of
requests sent to the large (strong) model. ``PGR = (acc - acc_weak) / (acc_strong - acc_weak)``;
``CPT(x)`` is the smallest large share whose accuracy recovers ``x`` of the weak→strong gap;
``APGR`` is the area under PGR over share ∈ [0, 1] (random routing = 0.5).

We use the exact curve: one point at every tie-group boundary of the sorted scores, linear in
between (the expected accuracy when ties are split at random), so APGR is the exact area rather
than RouteLLM's 10-point approximation, and CPT interpolates linearly between points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class CostQualityCurve:
    """Piecewise-linear accuracy curve; ``share`` increases from 0 to 1."""

    share: FloatArray
    accuracy: FloatArray

    @property
    def weak_accuracy(self) -> float:
        """Accuracy when everything goes to the small model."""
        return float(self.accuracy[0])

    @property
    def strong_accuracy(self) -> float:
        """Accuracy when everything goes to the large model."""
        return float(self.accuracy[-1])

    def pgr(self) -> FloatArray:
        """Performance gap recovered at each curve point (may exceed 1, e.g. for the oracle)."""
        gap = self.strong_accuracy - self.weak_accuracy
        if gap <= 0:
            return np.full_like(self.accuracy, np.nan)
        return (self.accuracy - self.weak_accuracy) / gap

    def accuracy_at(self, share: float) -> float:
        """Accuracy at a given large-model share (linear interpolation)."""
        return float(np.interp(share, self.share, self.accuracy))


def cost_quality_curve(
    scores: npt.ArrayLike, weak_correct: npt.ArrayLike, strong_correct: npt.ArrayLike
) -> CostQualityCurve:
    """Accuracy vs large share when the highest-scoring requests go to the large model."""
    s = np.asarray(scores, dtype=np.float64)
    w = np.asarray(weak_correct, dtype=np.float64)
    c = np.asarray(strong_correct, dtype=np.float64)
    if not (s.shape == w.shape == c.shape) or s.ndim != 1 or s.size == 0:
        raise ValueError("scores, weak_correct and strong_correct must be equal-length 1-D arrays")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    n = s.size
    order = np.argsort(-s, kind="stable")
    sorted_s = s[order]
    gain = np.concatenate([[0.0], np.cumsum((c - w)[order])])
    # Keep only tie-group boundaries: routing part of a tie is the straight line between them.
    boundary = np.concatenate([[True], sorted_s[1:] != sorted_s[:-1], [True]])
    k = np.flatnonzero(boundary)
    share = k / n
    accuracy = (w.sum() + gain[k]) / n
    return CostQualityCurve(share=share.astype(np.float64), accuracy=accuracy)


def cpt(curve: CostQualityCurve, fraction: float) -> float:
    """Call-performance threshold: min large share to recover ``fraction`` of the gap (0..1).

    Returns NaN when the gap is not positive or the curve never reaches the target.
    """
    gap = curve.strong_accuracy - curve.weak_accuracy
    if gap <= 0:
        return float("nan")
    target = curve.weak_accuracy + fraction * gap
    acc = curve.accuracy
    if acc[0] >= target:
        return 0.0
    hit = np.flatnonzero(acc >= target - 1e-12)
    if hit.size == 0:
        return float("nan")
    i = int(hit[0])
    x0, x1 = curve.share[i - 1], curve.share[i]
    y0, y1 = acc[i - 1], acc[i]
    return float(x0 + (target - y0) * (x1 - x0) / (y1 - y0))


def apgr(curve: CostQualityCurve) -> float:
    """Average performance gap recovered: exact area under the PGR curve over share ∈ [0, 1]."""
    p = curve.pgr()
    return float(np.sum((p[1:] + p[:-1]) * np.diff(curve.share)) / 2.0)


def oracle_scores(weak_correct: npt.ArrayLike, strong_correct: npt.ArrayLike) -> FloatArray:
    """Scores of the oracle router: large model first where only it is right, last where it hurts."""
    w = np.asarray(weak_correct, dtype=np.float64)
    c = np.asarray(strong_correct, dtype=np.float64)
    return (c - w + 1.0) / 2.0


def random_scores(n: int, seed: int) -> FloatArray:
    """Scores of the random router (seeded)."""
    return np.random.default_rng(seed).random(n)


@dataclass(frozen=True)
class RoutingMetrics:
    """The summary figures reported per router and setting."""

    apgr: float
    cpt50: float
    cpt80: float
    weak_accuracy: float
    strong_accuracy: float

    def as_dict(self) -> dict[str, float]:
        """JSON-friendly form."""
        return {
            "apgr": self.apgr,
            "cpt50": self.cpt50,
            "cpt80": self.cpt80,
            "weak_accuracy": self.weak_accuracy,
            "strong_accuracy": self.strong_accuracy,
        }


def routing_metrics(
    scores: npt.ArrayLike, weak_correct: npt.ArrayLike, strong_correct: npt.ArrayLike
) -> RoutingMetrics:
    """APGR, CPT(50%), CPT(80%) for one set of scores."""
    curve = cost_quality_curve(scores, weak_correct, strong_correct)
    return RoutingMetrics(
        apgr=apgr(curve),
        cpt50=cpt(curve, 0.5),
        cpt80=cpt(curve, 0.8),
        weak_accuracy=curve.weak_accuracy,
        strong_accuracy=curve.strong_accuracy,
    )
