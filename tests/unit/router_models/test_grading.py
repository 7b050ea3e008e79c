"""Grading answers for ``slm-router label``: reference matching and the judge's request and verdict."""

from __future__ import annotations

import csv
import re

import pytest

from router_models.data import default_data_path
from router_models.grading import JUDGE_SYSTEM_PROMPT, judge_messages, matches_reference, parse_verdict


@pytest.mark.parametrize(
    ("answer", "reference", "expected"),
    [
        # Numbers: the answer's last number, GSM8K style.
        ("She pays 3 * 6 = 18 dollars.\n#### 18", "18", True),
        ("The total is $1,234.50 in the end.", "1234.5", True),
        ("18 eggs, minus 3, gives 15", "18", False),  # the last number counts, not the first
        ("It is 72%.", "72", True),
        ("No idea.", "18", False),
        ("-4 degrees", "-4", True),
        ("The answer is 0.5", ".5", True),
        # Letters: the option the answer picks.
        ("Answer: C", "C", True),
        ("The answer is (b) because ...", "B", True),
        ("C. 24", "C", True),
        ("I think (D) is right", "d", True),
        ("I think so.", "I", False),  # a sentence's "I" is not option I
        ("The answer is a bit subtle: (C).", "C", True),  # "a" is a word here, not option A
        ("answer: b", "B", False),
        ("Answer: A", "C", False),
        ("Clearly the group is cyclic.", "C", False),  # a capital C inside a word picks nothing
        # Text: contained, ignoring case, punctuation and spacing.
        ("The capital is  Paris, France.", "paris", True),
        ("The capital is Lyon.", "Paris", False),
        ("anything", "!!!", False),  # a reference with no words matches nothing
    ],
)
def test_matches_reference(answer: str, reference: str, expected: bool) -> None:
    assert matches_reference(answer, reference) is expected


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("CORRECT", True),
        ("incorrect", False),
        ("INCORRECT.", False),
        ("Verdict: Correct", True),
        ("The answer is INCORRECT, not CORRECT", False),  # the first verdict word decides
        ("I cannot tell.", None),
        ("", None),
    ],
)
def test_parse_verdict(reply: str, verdict: bool | None) -> None:
    assert parse_verdict(reply) is verdict


def test_judge_sees_the_whole_conversation_the_reference_and_the_answer() -> None:
    long_context = "x" * 20_000  # longer than the router's own rendering keeps
    messages = [
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": [{"type": "text", "text": "Capital of France? " + long_context}]},
    ]
    request = judge_messages(messages, "Paris", "Paris")
    assert request[0] == {"role": "system", "content": JUDGE_SYSTEM_PROMPT}
    body = request[1]["content"]
    assert "system: Answer in French." in body
    assert long_context in body
    assert "[Reference answer]\nParis" in body
    assert body.index("[Reference answer]") < body.index("[Assistant's answer]\nParis")
    assert "[Reference answer]" not in judge_messages(messages, "Paris", None)[1]["content"]


def test_reference_grading_agrees_with_routellms_grades_of_real_answers() -> None:
    """GSM8K ships Mixtral's and GPT-4's full answers with RouteLLM's grades. Where GPT-4 was
    right, its final number is the reference; grading Mixtral's answer against it should give
    RouteLLM's grade for Mixtral (measured: 1,126 of 1,130 agree; the 4 others are "$0.84"
    against "84" cents and the like, which RouteLLM accepted)."""
    weak, strong = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
    with (default_data_path() / "gsm8k" / "gsm8k_responses.csv").open(encoding="utf-8", newline="") as f:
        rows = [row for row in csv.DictReader(f) if row[strong] == "True"]
    agree = counted = 0
    for row in rows:
        numbers = re.findall(r"-?\d+(?:\.\d+)?", row[f"{strong}_response"].replace(",", ""))
        if not numbers:
            continue
        counted += 1
        agree += matches_reference(row[f"{weak}_response"], numbers[-1]) == (row[weak] == "True")
    assert counted > 1_000
    assert agree / counted >= 0.99
