"""Label agreement between copies of a repeated prompt (hand-computed cases and the real MMLU)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from router_models.data import LabeledPrompts
from router_models.label_agreement import format_agreement, repeated_prompt_agreement


def _data(prompts: list[str], weak: list[bool], strong: list[bool]) -> LabeledPrompts:
    return LabeledPrompts(
        name="toy",
        prompts=tuple(prompts),
        weak=np.array(weak, dtype=bool),
        strong=np.array(strong, dtype=bool),
        subject=tuple("toy" for _ in prompts),
        digest="0",
    )


def test_agreement_counts_every_pair_of_copies() -> None:
    # "a" twice (1 pair), "b" three times (3 pairs), "c" once (none).
    data = _data(
        ["a", "a", "b", "b", "b", "c"],
        weak=[True, True, False, True, False, True],
        strong=[True, True, True, True, True, False],
    )
    a = repeated_prompt_agreement(data)
    assert a.pairs == 4
    assert a.weak == pytest.approx(2 / 4)  # a: yes; b: F/T no, F/F yes, T/F no
    assert a.strong == pytest.approx(1.0)
    assert a.gain == pytest.approx(2 / 4)  # gains 0,0 | 1,0,1
    assert a.weak_chance == pytest.approx((4 / 6) ** 2 + (2 / 6) ** 2)
    assert a.strong_chance == pytest.approx((5 / 6) ** 2 + (1 / 6) ** 2)
    assert a.gain_chance == pytest.approx((3 / 6) ** 2 + (2 / 6) ** 2 + (1 / 6) ** 2)
    assert a.weak_kappa == pytest.approx(-1 / 8)  # worse than chance
    assert a.strong_kappa == pytest.approx(1.0)
    assert "4 pairs" in format_agreement(a)


def test_no_repeated_prompt_is_reported_not_divided_by_zero() -> None:
    a = repeated_prompt_agreement(_data(["x", "y"], [True, False], [True, True]))
    assert a.pairs == 0 and math.isnan(a.weak)
    assert "not measurable" in format_agreement(a)


def test_mmlu_copies_agree_far_above_chance(mmlu: LabeledPrompts) -> None:
    # docs/routers.md reads the plateau through this: the labels are a stable property of the
    # prompt (graded the same on both copies), not one noisy draw per model.
    a = repeated_prompt_agreement(mmlu)
    assert a.pairs >= 100
    assert a.weak_kappa > 0.8 and a.strong_kappa > 0.8 and a.gain_kappa > 0.8, a
