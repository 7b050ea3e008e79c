"""Cheap, label-free numeric features of a rendered conversation.

They describe the *shape* of a request (length, digits, math/code markup, multiple-choice
structure) and so transfer to open-ended chat prompts better than benchmark-specific words.
Nothing here looks at answers or model responses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_MATH = re.compile(r"[=+*/^<>≤≥√∑∫π]|\\frac|\\sqrt|\$")
_CODE = re.compile(r"```|\bdef\b|\breturn\b|[{};]|\bint\b|\bprint\b")
_OPTION = re.compile(r"^\s*\(?[A-D][.)]\s", re.MULTILINE)
_WORD = re.compile(r"\w+")

FEATURE_NAMES: tuple[str, ...] = (
    "log_chars",
    "log_words",
    "log_lines",
    "numbers_per_100w",
    "log_numbers",
    "math_per_100w",
    "code_per_100w",
    "mean_word_len",
    "long_word_frac",
    "question_marks",
    "option_count",
    "option_mean_len",
    "log_turns",
)


def prompt_features(text: str, turns: int = 1) -> list[float]:
    """Feature vector (see :data:`FEATURE_NAMES`) of one rendered conversation."""
    words = _WORD.findall(text)
    n_words = max(len(words), 1)
    numbers = _NUMBER.findall(text)
    options = _OPTION.findall(text)
    option_lines = [ln for ln in text.splitlines() if _OPTION.match(ln)]
    word_lens = [len(w) for w in words] or [0]
    return [
        math.log1p(len(text)),
        math.log1p(len(words)),
        math.log1p(text.count("\n")),
        100.0 * len(numbers) / n_words,
        math.log1p(len(numbers)),
        100.0 * len(_MATH.findall(text)) / n_words,
        100.0 * len(_CODE.findall(text)) / n_words,
        float(np.mean(word_lens)),
        sum(1 for x in word_lens if x >= 9) / n_words,
        float(min(text.count("?"), 5)),
        float(len(options)),
        math.log1p(float(np.mean([len(ln) for ln in option_lines])) if option_lines else 0.0),
        math.log1p(max(turns - 1, 0)),
    ]


def feature_matrix(texts: Sequence[str], turns: Sequence[int] | None = None) -> npt.NDArray[np.float64]:
    """Stack :func:`prompt_features` for several texts into ``(n, len(FEATURE_NAMES))``."""
    t = turns if turns is not None else [1] * len(texts)
    return np.array([prompt_features(x, n) for x, n in zip(texts, t, strict=True)], dtype=np.float64)
