"""Linear "routing gain" head shared by the trained routers.

Every benchmark row has a gain ``strong_correct - weak_correct`` ∈ {-1, 0, +1}. We fit a
multinomial logistic regression on the three outcomes and score a request with

    score = P(gain = +1) + ½ · P(gain = 0)

i.e. the probability that the large model does better, counting "both right / both wrong" as a
coin flip. It ranks requests by expected gain, which the RouteLLM curve rewards; in our CV it beat
a binary "weak model wrong" target by ~0.09 APGR and a binary "only strong right" target by ~0.02.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from router_models.errors import RouterArtifactError

GAIN_CLASSES = (-1, 0, 1)
FloatArray = npt.NDArray[np.float64]


def gain_labels(weak: npt.ArrayLike, strong: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """``strong - weak`` correctness per row, in {-1, 0, +1}."""
    return np.asarray(strong, dtype=np.int64) - np.asarray(weak, dtype=np.int64)


def gain_probabilities_to_score(proba: FloatArray) -> FloatArray:
    """Map ``(n, 3)`` class probabilities (order -1, 0, +1) to the [0, 1] routing score."""
    return np.clip(proba[:, 2] + 0.5 * proba[:, 1], 0.0, 1.0)


@dataclass(frozen=True)
class GainHead:
    """Multinomial logistic regression over features; ``coef`` is ``(3, d)``."""

    coef: npt.NDArray[np.float32]
    intercept: npt.NDArray[np.float32]

    def __post_init__(self) -> None:
        if self.coef.ndim != 2 or self.coef.shape[0] != 3 or self.intercept.shape != (3,):
            raise RouterArtifactError(
                f"gain head has shape {self.coef.shape}/{self.intercept.shape}, expected (3, d)/(3,)"
            )

    @property
    def dim(self) -> int:
        """Number of input features."""
        return int(self.coef.shape[1])

    def proba(self, x: FloatArray | sp.csr_matrix) -> FloatArray:
        """Class probabilities ``(n, 3)`` for features ``x`` (dense or CSR)."""
        logits = np.asarray(x @ self.coef.T, dtype=np.float64) + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)

    def score(self, x: FloatArray | sp.csr_matrix) -> FloatArray:
        """Routing scores in [0, 1] for features ``x``."""
        return gain_probabilities_to_score(self.proba(x))


def fit_gain_head(x: FloatArray | sp.csr_matrix, gain: npt.NDArray[np.int64], c: float, seed: int) -> GainHead:
    """Fit the head with scikit-learn (L2, lbfgs); classes absent from ``gain`` get ~zero mass."""
    from sklearn.linear_model import LogisticRegression

    present = sorted(set(int(g) for g in gain))
    coef = np.zeros((3, x.shape[1]), dtype=np.float32)
    intercept = np.full(3, -30.0, dtype=np.float32)
    if len(present) == 1:
        intercept[GAIN_CLASSES.index(present[0])] = 0.0
        return GainHead(coef, intercept)
    model = LogisticRegression(C=c, max_iter=3000, random_state=seed, tol=1e-5)
    model.fit(x, gain)
    rows = [GAIN_CLASSES.index(int(k)) for k in model.classes_]
    if len(present) == 2:
        # Binary LR stores one row w for the positive class: softmax([0, w]) equals sigmoid(w).
        coef[rows[1]] = model.coef_[0]
        intercept[rows[0]] = 0.0
        intercept[rows[1]] = model.intercept_[0]
    else:
        coef[rows] = model.coef_
        intercept[rows] = model.intercept_
    return GainHead(coef, intercept)
