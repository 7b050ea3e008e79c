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


# -- answer-choice features (used by the ``stacked`` router only) -----------------------------
_CHOICE = re.compile(r"^\s*\(?([A-D])[.)]\s?(.*)$", re.MULTILINE)
_NUMERIC_CHOICE = re.compile(r"^[\s$£€-]*\d[\d.,/%\s^*x\u00d7-]*[a-zA-Z%]{0,6}\.?$")
_NEGATION = re.compile(r"\b(NOT|EXCEPT|LEAST|FALSE|INCORRECT|never)\b")
_ROMAN = re.compile(r"\b(I{1,3}|IV)\b(?: only|,| and)")
_ALL_NONE = re.compile(r"\b(all|none|both|neither) of the (above|these)\b", re.IGNORECASE)
_STATEMENTS = re.compile(r"Statement 1\b")
_TRUE_FALSE = re.compile(r"^\s*[A-D][.)]\s*(True|False), (True|False)", re.MULTILINE)

CHOICE_FEATURE_NAMES: tuple[str, ...] = (
    "log_stem_chars",
    "log_choice_mean_len",
    "choice_len_cv",
    "choice_len_log_range",
    "numeric_choice_frac",
    "stem_negation",
    "roman_combinations",
    "all_none_of_above",
    "statement_pair",
    "true_false_pairs",
    "stem_digits_per_100c",
    "stem_lines",
)


def choice_features(text: str) -> list[float]:
    """Features of a multiple-choice question's stem and answer options (see
    :data:`CHOICE_FEATURE_NAMES`); for a prompt without options the option features are 0 and
    the stem is the whole text."""
    opts = [m.group(2).strip() for m in _CHOICE.finditer(text)]
    first = _CHOICE.search(text)
    stem = text[: first.start()] if first else text
    lens = [len(o) for o in opts] or [0]
    numeric = sum(1 for o in opts if o and _NUMERIC_CHOICE.match(o)) / max(len(opts), 1)
    mean_len = float(np.mean(lens))
    return [
        math.log1p(len(stem)),
        math.log1p(mean_len),
        float(np.std(lens)) / (mean_len + 1.0),
        math.log1p(max(lens)) - math.log1p(min(lens)),
        numeric,
        float(bool(_NEGATION.search(stem))),
        float(bool(_ROMAN.search(text))),
        float(bool(_ALL_NONE.search(text))),
        float(bool(_STATEMENTS.search(text))),
        float(bool(_TRUE_FALSE.search(text))),
        100.0 * sum(ch.isdigit() for ch in stem) / (len(stem) + 1),
        float(stem.count("\n")),
    ]


def choice_matrix(texts: Sequence[str]) -> npt.NDArray[np.float64]:
    """Stack :func:`choice_features` into ``(n, len(CHOICE_FEATURE_NAMES))``."""
    return np.array([choice_features(t) for t in texts], dtype=np.float64).reshape(len(texts), -1)
