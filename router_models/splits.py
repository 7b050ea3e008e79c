"""Seeded, duplicate-aware data splits.

MMLU contains ~100 repeated prompts; splitting by unique prompt text keeps every copy on the same
side, so no router (the kNN one especially) is evaluated on a prompt it was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.intp]


def group_folds(prompts: Sequence[str], k: int, seed: int) -> npt.NDArray[np.int64]:
    """Fold id (0..k-1) per row; identical prompts share a fold."""
    uniq = sorted(set(prompts))
    perm = np.random.default_rng(seed).permutation(len(uniq))
    fold_of = {uniq[j]: i % k for i, j in enumerate(perm)}
    return np.array([fold_of[p] for p in prompts], dtype=np.int64)


def holdout_split(prompts: Sequence[str], fraction: float, seed: int) -> tuple[IntArray, IntArray]:
    """(fit, held-out) row indices with about ``fraction`` of unique prompts held out."""
    uniq = sorted(set(prompts))
    rng = np.random.default_rng(seed + 7919)  # decorrelated from the CV fold assignment
    held = set(rng.choice(len(uniq), size=max(1, round(fraction * len(uniq))), replace=False).tolist())
    held_text = {uniq[i] for i in held}
    is_held = np.array([p in held_text for p in prompts])
    return np.flatnonzero(~is_held), np.flatnonzero(is_held)
