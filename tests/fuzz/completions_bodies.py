"""Hypothesis strategies for hostile ``/v1/completions`` requests: wrong prompts (lists, token
ids, nesting, empty), wrong and refused fields (``echo``, ``suffix``, ``best_of``), and a valid
control group (some streamed, some with logprobs)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.fuzz.bodies import MODELS, FuzzRequest, json_values, posts

__all__ = ["COMPLETIONS", "completions_requests"]

COMPLETIONS = "/v1/completions"


def _prompts() -> st.SearchStrategy[Any]:
    text = st.text(max_size=30)
    return st.one_of(
        text,
        st.lists(text, max_size=3),
        st.lists(st.integers(-5, 70_000), max_size=4),
        st.lists(st.lists(st.integers(0, 100), max_size=3), max_size=2),
        json_values(2),
    )


def completions_bodies() -> st.SearchStrategy[dict[str, Any]]:
    """Completion bodies, mostly wrong in one or more fields."""
    hostile = json_values(2)
    return st.fixed_dictionaries(
        {"model": st.one_of(st.sampled_from(MODELS), hostile), "prompt": _prompts()},
        optional={
            name: st.one_of(values, hostile)
            for name, values in {
                "max_tokens": st.integers(-1, 10**7),
                "temperature": st.floats(allow_nan=True, allow_infinity=True),
                "n": st.integers(-1, 200),
                "best_of": st.integers(-1, 4),
                "logprobs": st.integers(-1, 7),
                "echo": st.booleans(),
                "suffix": st.text(max_size=5),
                "stream": st.booleans(),
                "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
                "stop": st.lists(st.text(max_size=3), max_size=5),
                "logit_bias": st.dictionaries(st.text(max_size=4), st.floats(-200, 200), max_size=3),
                "seed": st.integers(-(2**63), 2**63),
            }.items()
        },
    )


def valid_completions_bodies() -> st.SearchStrategy[dict[str, Any]]:
    """Requests the gateway must answer with 200."""
    return st.fixed_dictionaries(
        {
            "model": st.sampled_from(["router", "small-model"]),
            "prompt": st.one_of(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40).map(lambda p: [p])),
        },
        optional={
            "max_tokens": st.integers(1, 64),
            "temperature": st.floats(0, 2),
            "stream": st.booleans(),
            "logprobs": st.integers(0, 5),
            "n": st.integers(1, 3),
            "stop": st.lists(st.text("abc", min_size=1, max_size=3), max_size=4),
        },
    )


def completions_requests() -> st.SearchStrategy[FuzzRequest]:
    """The Completions API family: wrong and valid bodies, to either app."""
    return st.one_of(
        posts(COMPLETIONS, "completions", completions_bodies()),
        posts(COMPLETIONS, "completions-valid", valid_completions_bodies()),
    )
