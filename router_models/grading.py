"""Grading one model answer for ``slm-router label``: against a reference, or by a judge model.

Two graders, both pure (the judge's *call* lives in :mod:`router_models.labelling`):

- :func:`matches_reference`: deterministic, for prompts with a known answer. A numeric reference
  matches the answer's last number (GSM8K's convention: commas, ``$`` and ``%`` ignored); a
  single letter A to J matches the option the answer picks ("Answer: C", "(C)", "C. …", "the answer
  is C"); any other reference must appear in the answer, compared case- and
  whitespace-insensitively.
- :func:`judge_messages` / :func:`parse_verdict`: the chat request that asks a judge model whether
  an answer is acceptable (with the reference when there is one), and the reading of its reply,
  which must say ``CORRECT`` or ``INCORRECT``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from router_models.conversation import render_conversation, turn_from_message

__all__ = ["JUDGE_SYSTEM_PROMPT", "judge_messages", "matches_reference", "parse_verdict"]

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_LETTER_PATTERNS = (
    # "Answer: C", "the answer is (c)"; a bare lower-case letter is a word ("the answer is a ...").
    re.compile(r"(?i:answer)\s*(?:is\b|:)?\s*(?:\(([A-Ja-j])\)|\b([A-J])\b)"),
    # "C. 24", "(C)", "C)": a letter alone would read "I think ..." as option I.
    re.compile(r"^\s*\(?([A-J])(?:[.):]|$)"),
    re.compile(r"\(([A-J])\)"),
)
_JUDGE_MAX_CHARS = 400_000
_VERDICT = re.compile(r"\b(INCORRECT|CORRECT)\b", re.IGNORECASE)
_LETTER_REFERENCE = re.compile(r"^\(?([A-Ja-j])\)?$")

JUDGE_SYSTEM_PROMPT = (
    "You grade an AI assistant's answer to a user's request. The answer is CORRECT if it does what "
    "was asked and contains no error that matters (a wrong fact, a wrong result, a flawed step the "
    "result depends on, or an instruction ignored); otherwise it is INCORRECT. When a reference "
    "answer is given, an answer whose final result disagrees with it is INCORRECT. Style and "
    "length do not matter. Reply with one word: CORRECT or INCORRECT."
)


def _as_number(text: str) -> float | None:
    cleaned = text.strip().replace(",", "").replace("$", "").rstrip("%").strip()
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _last_number(answer: str) -> float | None:
    found = _NUMBER.findall(answer.replace("$", ""))
    return _as_number(found[-1]) if found else None


def _chosen_letter(answer: str) -> str | None:
    for pattern in _LETTER_PATTERNS:
        match = pattern.search(answer)
        if match:
            return next(g for g in match.groups() if g).upper()
    return None


def _normalised(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def matches_reference(answer: str, reference: str) -> bool:
    """Whether ``answer`` agrees with ``reference`` (rules in the module doc)."""
    expected = _as_number(reference)
    if expected is not None:
        got = _last_number(answer)
        return got is not None and math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-9)
    letter = _LETTER_REFERENCE.match(reference.strip())
    if letter:
        return _chosen_letter(answer) == letter.group(1).upper()
    needle = _normalised(reference)
    return bool(needle) and needle in _normalised(answer)


def judge_messages(messages: Sequence[Mapping[str, Any]], answer: str, reference: str | None) -> list[dict[str, str]]:
    """The chat messages asking a judge model to grade ``answer`` to the conversation ``messages``."""
    # The router's own rendering keeps only the newest few thousand characters; a judge needs the lot.
    conversation = render_conversation([turn_from_message(m) for m in messages], max_chars=_JUDGE_MAX_CHARS)
    parts = [f"[Conversation]\n{conversation}"]
    if reference is not None:
        parts.append(f"[Reference answer]\n{reference}")
    parts.append(f"[Assistant's answer]\n{answer}")
    parts.append("Is the assistant's answer CORRECT or INCORRECT?")
    return [
        {"role": "system", "content": JUDGE_SYSTEM_PROMPT},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


def parse_verdict(reply: str) -> bool | None:
    """The judge's verdict: True for CORRECT, False for INCORRECT, None when it gave neither."""
    match = _VERDICT.search(reply)
    if match is None:
        return None
    return match.group(1).upper() == "CORRECT"
