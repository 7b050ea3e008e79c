"""Hypothesis strategies for vLLM's request extensions on chat bodies: ``structured_outputs``
(good and bad constraints, several at once, odd keys), the token lists and ``bad_words``, and
vLLM's old ``guided_*`` names; plus valid constrained requests (a control group)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.fuzz.bodies import chat_bodies, json_values, schemas

__all__ = ["chat_bodies_with_vllm_extensions", "structured_outputs", "valid_constrained_bodies"]


def structured_outputs() -> st.SearchStrategy[Any]:
    """vLLM's ``structured_outputs``: constraints good and bad, several at once, odd keys and values."""
    one = st.one_of(
        st.fixed_dictionaries({"choice": st.one_of(st.lists(st.text(max_size=6), max_size=4), json_values(1))}),
        st.fixed_dictionaries({"regex": st.one_of(st.sampled_from(["[0-9]+", "(", "a{99999}", ""]), json_values(1))}),
        st.fixed_dictionaries(
            {"grammar": st.one_of(st.sampled_from(['root ::= "a"', "root ::= (", ""]), json_values(1))}
        ),
        st.fixed_dictionaries({"json": st.one_of(schemas(), st.text(max_size=8), json_values(2))}),
        st.fixed_dictionaries({"json_object": json_values(1)}),
    )
    return st.one_of(
        one,
        st.builds(lambda a, b: {**a, **b}, one, one),
        st.dictionaries(st.text(max_size=10), json_values(2), max_size=3),
        json_values(2),
    )


def chat_bodies_with_vllm_extensions() -> st.SearchStrategy[dict[str, Any]]:
    """:func:`~tests.fuzz.bodies.chat_bodies` with some of vLLM's extensions, often wrong."""
    token_ids = st.one_of(st.lists(st.integers(-2, 10**12), max_size=3), json_values(1))
    extensions = st.fixed_dictionaries(
        {},
        optional={
            "structured_outputs": structured_outputs(),
            "guided_choice": st.one_of(st.lists(st.text(max_size=5), max_size=3), json_values(1)),
            "stop_token_ids": token_ids,
            "allowed_token_ids": token_ids,
            "bad_words": st.one_of(st.lists(st.text(max_size=5), max_size=3), json_values(1)),
        },
    )
    return st.builds(lambda body, extra: {**body, **extra}, chat_bodies(), extensions)


def valid_constrained_bodies() -> st.SearchStrategy[dict[str, Any]]:
    """Valid requests with vLLM's ``structured_outputs`` for a model that takes it (200s)."""
    return st.fixed_dictionaries(
        {
            "model": st.sampled_from(["router", "small-model"]),
            "messages": st.just([{"role": "user", "content": "label this"}]),
            "structured_outputs": st.sampled_from(
                [{"choice": ["a", "b"]}, {"regex": "[0-9]+"}, {"json": {"type": "object"}}, {"json_object": True}]
            ),
        },
        optional={"stream": st.booleans(), "max_tokens": st.integers(1, 64)},
    )
