"""The response-cache key: what counts, what is ignored, what cannot be cached."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.state import cache_digest, normalise_request

BASE: dict[str, Any] = {
    "model": "router",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    "temperature": 0.0,
    "max_tokens": 16,
}


def variant(**changes: Any) -> dict[str, Any]:
    request = dict(BASE)
    request.update(changes)
    return request


@pytest.mark.parametrize(
    "same",
    [
        variant(user="alice", stream=False, stream_options={"include_usage": True}),
        variant(logprobs=False, metadata={"x": 1}, some_future_field=[1, 2]),
        variant(logprobs=None, top_logprobs=0),
        variant(temperature=0),
        variant(max_tokens=None, max_completion_tokens=16),
        variant(stop=None),
        variant(stop=[]),
        variant(n=1),
        variant(response_format={"type": "text"}),
        variant(response_format=None),
        # verbosity's default is the same everywhere.
        variant(verbosity="medium"),
        variant(verbosity=None, reasoning_effort=None),
        variant(logit_bias={}),
        # vLLM's extensions at their defaults ask for nothing.
        variant(ignore_eos=False, min_tokens=0, top_k=0, min_p=0.0, repetition_penalty=1.0),
        variant(top_k=-1),
        variant(stop_token_ids=[], allowed_token_ids=[], bad_words=[]),
        variant(
            messages=[
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "H"}, {"type": "text", "text": "i"}]},
            ]
        ),
        variant(messages=[{"role": "system", "content": "Be brief.", "name": "x"}, {"role": "user", "content": "Hi"}]),
        {**{k: BASE[k] for k in ("messages", "max_tokens", "temperature")}, "model": "router"},
    ],
)
def test_equivalent_requests_share_a_digest(same: dict[str, Any]) -> None:
    assert cache_digest(same) == cache_digest(BASE)


@pytest.mark.parametrize(
    "different",
    [
        variant(model="smollm2-135m-instruct"),
        variant(messages=[{"role": "user", "content": "Hi"}]),
        variant(messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]),
        variant(messages=[{"role": "user", "content": "Be brief."}, {"role": "user", "content": "Hi"}]),
        variant(temperature=0.7),
        variant(temperature=None),
        variant(top_p=0.9),
        variant(max_tokens=17),
        variant(max_completion_tokens=32),
        variant(seed=1),
        variant(stop="\n"),
        variant(stop=["\n", "END"]),
        variant(presence_penalty=0.5),
        variant(frequency_penalty=0.5),
        variant(router_threshold=0.3),
        variant(response_format={"type": "json_object"}),
        variant(response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}),
        variant(logprobs=True),
        variant(logprobs=True, top_logprobs=2),
        variant(reasoning_effort="low"),
        # A model's default effort varies by model, so asking for "medium" is not the default.
        variant(reasoning_effort="medium"),
        variant(verbosity="low"),
        variant(logit_bias={"42": -100}),
        variant(logit_bias={"42": 100}),
        # /v1/completions: the one message continued without a chat template.
        variant(raw_prompt=True),
        variant(ignore_eos=True),
        variant(min_tokens=4),
        variant(top_k=20),
        variant(min_p=0.1),
        variant(repetition_penalty=1.2),
        variant(structured_outputs={"choice": ["yes", "no"]}),
        variant(structured_outputs={"choice": ["no", "yes"]}),
        variant(structured_outputs={"regex": "[0-9]+"}),
        variant(stop_token_ids=[2]),
        variant(allowed_token_ids=[5, 6]),
        variant(bad_words=["darn"]),
    ],
)
def test_output_relevant_changes_change_the_digest(different: dict[str, Any]) -> None:
    assert cache_digest(different) != cache_digest(BASE)


def test_stop_string_equals_one_element_list() -> None:
    assert cache_digest(variant(stop="x")) == cache_digest(variant(stop=["x"]))
    assert cache_digest(variant(stop=["a", "b"])) != cache_digest(variant(stop=["b", "a"]))


def test_threshold_int_and_float_are_one_key() -> None:
    assert cache_digest(variant(router_threshold=0)) == cache_digest(variant(router_threshold=0.0))
    assert cache_digest(variant(router_threshold=0)) != cache_digest(variant(router_threshold=1))


def test_response_formats_key_by_content_not_key_order() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    one = variant(response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}})
    reordered = variant(
        response_format={"json_schema": {"schema": dict(reversed(schema.items())), "name": "a"}, "type": "json_schema"}
    )
    other_schema = variant(
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "array"}}}
    )
    assert cache_digest(one) == cache_digest(reordered)
    assert cache_digest(one) != cache_digest(other_schema)
    assert cache_digest(one) != cache_digest(variant(response_format={"type": "json_object"}))


def test_scope_separates_tenants() -> None:
    assert cache_digest(BASE, "tenant-a") != cache_digest(BASE, "tenant-b")
    assert cache_digest(BASE, "tenant-a") == cache_digest(BASE, "tenant-a")


def test_normal_form() -> None:
    normal = normalise_request(variant(temperature=1, stop="x", user="u"))
    assert normal == {
        "model": "router",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "temperature": 1.0,
        "top_p": None,
        "presence_penalty": None,
        "frequency_penalty": None,
        "router_threshold": None,
        "max_tokens": 16,
        "seed": None,
        "n": 1,
        "stop": ["x"],
        "response_format": None,
        "logprobs": False,
        "top_logprobs": 0,
        "tools": None,
        "tool_choice": None,
        "parallel_tool_calls": None,
        "logit_bias": None,
        "raw_prompt": False,
        "ignore_eos": False,
        "min_tokens": 0,
        "top_k": -1,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
        "reasoning_effort": None,
        "verbosity": None,
        "structured_outputs": None,
        "stop_token_ids": None,
        "allowed_token_ids": None,
        "bad_words": None,
    }
    assert isinstance(normal["temperature"], float)


TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


def test_tools_key_with_openais_defaults_filled_in() -> None:
    plain = cache_digest(variant(tools=[TOOL]))
    assert plain == cache_digest(variant(tools=[TOOL], tool_choice="auto", parallel_tool_calls=True))
    assert plain != cache_digest(variant(tools=[TOOL], tool_choice="required"))
    assert plain != cache_digest(variant(tools=[TOOL], parallel_tool_calls=False))
    assert plain != cache_digest(variant(tools=[{**TOOL, "function": {"name": "g"}}]))
    assert plain != cache_digest(BASE)
    # Without tools, tool_choice "none"/"auto" and parallel_tool_calls change nothing.
    assert cache_digest(BASE) == cache_digest(variant(tools=[], tool_choice="none", parallel_tool_calls=False))


def test_tool_turns_key_by_their_calls_and_answers() -> None:
    def exchange(arguments: str, answer: str, call_id: str = "c1") -> dict[str, Any]:
        call = {**CALL, "id": call_id, "function": {"name": "f", "arguments": arguments}}
        return variant(
            messages=[
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": call_id, "content": answer},
            ]
        )

    one = cache_digest(exchange("{}", "ok"))
    assert one == cache_digest(exchange("{}", "ok"))
    assert one != cache_digest(exchange('{"a": 1}', "ok"))
    assert one != cache_digest(exchange("{}", "not ok"))
    assert one != cache_digest(exchange("{}", "ok", call_id="c2"))


@pytest.mark.parametrize(
    "bad",
    [
        {},
        variant(model=""),
        variant(messages=[]),
        variant(messages="hi"),
        variant(messages=[{"content": "no role"}]),
        variant(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
        variant(temperature=float("nan")),
        variant(temperature=True),
        variant(temperature="0.5"),
        variant(seed="1"),
        variant(stop=[1]),
        variant(response_format="json"),
        variant(reasoning_effort=1),
        variant(logit_bias={"42": "x"}),
        variant(logit_bias=[42]),
        variant(raw_prompt="yes"),
        variant(structured_outputs=["yes", "no"]),
        variant(bad_words="darn"),
    ],
)
def test_uncachable_requests_raise(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        cache_digest(bad)


def test_top_logprobs_key_apart_only_with_logprobs() -> None:
    two, three = variant(logprobs=True, top_logprobs=2), variant(logprobs=True, top_logprobs=3)
    assert cache_digest(two) != cache_digest(three)
    assert cache_digest(variant(logprobs=True, top_logprobs=0)) == cache_digest(variant(logprobs=True))


@pytest.mark.parametrize("bad", [variant(logprobs="yes"), variant(logprobs=True, top_logprobs=1.5)])
def test_odd_logprobs_values_cannot_be_cached(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="logprobs"):
        cache_digest(bad)


def test_logit_bias_keys_in_a_fixed_order() -> None:
    assert cache_digest(variant(logit_bias={"7": 1, "42": -1})) == cache_digest(
        variant(logit_bias={"42": -1.0, "7": 1})
    )
