"""How reproducible the correctness labels are: agreement between copies of a repeated prompt.

MMLU holds 105 prompts twice (most of them filed under two subjects), each copy answered and
graded on its own. If the labels were one noisy draw from each model (sampling at a
temperature), copies would agree little more than two random rows with the same accuracy do; if
they agree almost always, the labels are a stable property of the prompt, and what limits a
router is predicting that property, not noise in it. ``slm-router eval`` prints this beside
its table.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from router_models.data import LabeledPrompts

__all__ = ["LabelAgreement", "format_agreement", "repeated_prompt_agreement"]


@dataclass(frozen=True)
class LabelAgreement:
    """Agreement of the labels over every pair of rows that share a prompt text.

    ``*_chance`` is the agreement two independent rows would reach at the data set's label
    frequencies (for accuracy ``p``: ``p² + (1 - p)²``); ``*_kappa`` is Cohen's kappa against
    it (1: always agree, 0: no better than chance).
    """

    dataset: str
    pairs: int
    weak: float
    strong: float
    gain: float
    weak_chance: float
    strong_chance: float
    gain_chance: float

    @property
    def weak_kappa(self) -> float:
        """Cohen's kappa of the weak model's labels across copies."""
        return _kappa(self.weak, self.weak_chance)

    @property
    def strong_kappa(self) -> float:
        """Cohen's kappa of the strong model's labels across copies."""
        return _kappa(self.strong, self.strong_chance)

    @property
    def gain_kappa(self) -> float:
        """Cohen's kappa of the routing gain (strong minus weak correctness) across copies."""
        return _kappa(self.gain, self.gain_chance)


def _kappa(observed: float, chance: float) -> float:
    return (observed - chance) / (1.0 - chance) if chance < 1.0 else float("nan")


def _chance(labels: npt.NDArray[np.generic]) -> float:
    """Agreement of two independent draws from ``labels``' value frequencies: sum of p²."""
    if not len(labels):
        return float("nan")
    _, counts = np.unique(labels, return_counts=True)
    shares = counts / counts.sum()
    return float(np.sum(shares * shares))


def repeated_prompt_agreement(data: LabeledPrompts) -> LabelAgreement:
    """Label agreement over all pairs of rows with identical prompt text (``nan`` without any)."""
    rows: defaultdict[str, list[int]] = defaultdict(list)
    for row, prompt in enumerate(data.prompts):
        rows[prompt].append(row)
    first: list[int] = []
    second: list[int] = []
    for index in rows.values():
        for a in range(len(index)):
            for b in range(a + 1, len(index)):
                first.append(index[a])
                second.append(index[b])
    i, j = np.array(first, dtype=np.intp), np.array(second, dtype=np.intp)
    gain = data.strong.astype(np.int8) - data.weak.astype(np.int8)

    def agree(values: npt.NDArray[np.generic]) -> float:
        return float(np.mean(values[i] == values[j])) if len(i) else float("nan")

    return LabelAgreement(
        dataset=data.name,
        pairs=len(i),
        weak=agree(data.weak),
        strong=agree(data.strong),
        gain=agree(gain),
        weak_chance=_chance(data.weak),
        strong_chance=_chance(data.strong),
        gain_chance=_chance(gain),
    )


def format_agreement(agreement: LabelAgreement) -> str:
    """One line for the eval output."""
    a = agreement
    if not a.pairs:
        return f"{a.dataset}: no repeated prompts, label agreement not measurable"
    return (
        f"{a.dataset}: {a.pairs} pairs of repeated prompts; labels agree: weak {100 * a.weak:.1f}% "
        f"(chance {100 * a.weak_chance:.1f}%, kappa {a.weak_kappa:.2f}), strong {100 * a.strong:.1f}% "
        f"(chance {100 * a.strong_chance:.1f}%, kappa {a.strong_kappa:.2f}), gain {100 * a.gain:.1f}% "
        f"(chance {100 * a.gain_chance:.1f}%, kappa {a.gain_kappa:.2f})"
    )
