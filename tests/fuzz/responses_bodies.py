"""Hypothesis strategies for hostile ``/v1/responses`` requests.

Structured but wrong bodies (hostile input items, tools, formats and refused parameters),
a valid control group (some streamed), and ``GET``/``DELETE /v1/responses/{id}`` and
``GET /v1/responses/{id}/input_items`` with odd ids and queries (streamed reads included).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.fuzz.bodies import (
    MODELS,
    ROLES,
    FuzzRequest,
    json_values,
    posts,
    response_formats,
    schemas,
)

__all__ = ["RESPONSES", "input_items", "responses_requests"]

RESPONSES = "/v1/responses"
_NAMES = st.sampled_from(["get_weather", "f", "a b", "x" * 65, ""])
_CALL_IDS = st.sampled_from(["c1", "c2", ""])
_RESPONSE_IDS = st.one_of(
    st.sampled_from(["resp_0", "resp_" + "0" * 32, "", "{x}", "a:b", "x" * 200]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="?#/"), max_size=30),
)


def _parts() -> st.SearchStrategy[Any]:
    text = st.fixed_dictionaries(
        {"type": st.sampled_from(["input_text", "output_text", "refusal", "text"]), "text": st.text(max_size=20)}
    )
    odd = st.one_of(
        st.fixed_dictionaries({"type": st.sampled_from(["input_image", "input_file", "input_audio"])}),
        st.fixed_dictionaries({"type": st.text(max_size=8), "text": json_values(2)}),
        json_values(3),
    )
    return st.lists(st.one_of(text, odd), max_size=3)


def input_items() -> st.SearchStrategy[Any]:
    """Input item lists, good and hostile (messages, calls, outputs, unsupported types, odd JSON)."""
    content = st.one_of(st.text(max_size=40), _parts(), json_values(2))
    message = st.fixed_dictionaries(
        {"role": st.one_of(st.sampled_from(ROLES), json_values(1)), "content": content},
        optional={"type": st.sampled_from(["message", "msg"]), "id": json_values(1), "status": json_values(1)},
    )
    call = st.fixed_dictionaries(
        {"type": st.just("function_call")},
        optional={
            "call_id": st.one_of(_CALL_IDS, json_values(1)),
            "name": st.one_of(_NAMES, json_values(1)),
            "arguments": st.one_of(st.just("{}"), json_values(1)),
        },
    )
    output = st.fixed_dictionaries(
        {"type": st.just("function_call_output")},
        optional={"call_id": st.one_of(_CALL_IDS, json_values(1)), "output": st.one_of(st.text(max_size=10), _parts())},
    )
    other = st.fixed_dictionaries(
        {"type": st.sampled_from(["reasoning", "item_reference", "web_search_call", ""])}, optional={"id": _CALL_IDS}
    )
    return st.one_of(st.lists(st.one_of(message, call, output, other, json_values(2)), max_size=5), json_values(3))


def _tools() -> st.SearchStrategy[Any]:
    tool = st.fixed_dictionaries(
        {"type": st.sampled_from(["function", "function", "web_search", "file_search", "mcp"])},
        optional={"name": st.one_of(_NAMES, json_values(1)), "parameters": schemas(), "strict": json_values(1)},
    )
    return st.one_of(st.lists(tool, max_size=3), json_values(3))


def _text_config() -> st.SearchStrategy[Any]:
    fmt = st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "json_object", "json_schema", "xml"])},
        optional={"name": st.one_of(_NAMES, json_values(1)), "schema": schemas(), "strict": json_values(1)},
    )
    return st.one_of(
        st.fixed_dictionaries({}, optional={"format": st.one_of(fmt, response_formats()), "verbosity": json_values(1)}),
        json_values(2),
    )


def responses_bodies() -> st.SearchStrategy[dict[str, Any]]:
    """Responses request objects, mostly wrong in one or more fields."""
    number = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**70), 2**70), json_values(1))
    optional = {
        "instructions": json_values(1),
        "previous_response_id": st.one_of(_RESPONSE_IDS, json_values(1)),
        "store": json_values(1),
        "stream": st.one_of(st.booleans(), json_values(1)),
        "temperature": number,
        "top_p": number,
        "max_output_tokens": number,
        "tools": _tools(),
        "tool_choice": st.one_of(
            st.sampled_from(["none", "auto", "required", "any"]),
            st.fixed_dictionaries({"type": st.sampled_from(["function", "web_search"]), "name": _NAMES}),
            json_values(2),
        ),
        "parallel_tool_calls": json_values(1),
        "text": _text_config(),
        "metadata": st.one_of(st.dictionaries(st.text(max_size=8), json_values(1), max_size=20), json_values(2)),
        "reasoning": st.one_of(st.just({"effort": "high"}), json_values(2)),
        "background": json_values(1),
        "include": st.one_of(
            st.lists(st.sampled_from(["message.output_text.logprobs", "reasoning.encrypted_content", "x"]), max_size=2),
            json_values(2),
        ),
        "top_logprobs": number,
        "truncation": st.one_of(st.sampled_from(["auto", "disabled"]), json_values(1)),
        "router_threshold": number,
    }
    body = st.fixed_dictionaries(
        {
            "model": st.one_of(st.sampled_from(MODELS), json_values(1)),
            "input": st.one_of(st.text(max_size=40), input_items()),
        },
        optional=optional,
    )
    drop = st.sets(st.sampled_from(["model", "input"]), max_size=2)
    return st.builds(lambda b, d: {k: v for k, v in b.items() if k not in d}, body, drop)


def valid_responses_bodies() -> st.SearchStrategy[dict[str, Any]]:
    """Requests the gateway must answer with 200 (a control group for the oracle)."""
    text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40)
    return st.fixed_dictionaries(
        {"model": st.sampled_from(["router", "small-model", "fake-large"]), "input": text},
        optional={
            "instructions": text,
            "temperature": st.floats(0, 2),
            "max_output_tokens": st.integers(1, 4096),
            "stream": st.booleans(),
            "store": st.booleans(),
            "metadata": st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=4),
        },
    )


def responses_requests() -> st.SearchStrategy[FuzzRequest]:
    """The Responses API family: wrong and valid bodies, and odd ids to read and delete."""
    targets = st.sampled_from(["open", "open", "keyed"])
    return st.one_of(
        posts(RESPONSES, "responses", responses_bodies()),
        posts(RESPONSES, "responses-valid", valid_responses_bodies()),
        st.builds(
            lambda method, rid, target: FuzzRequest(method, f"{RESPONSES}/{rid}", "responses-id", None, target=target),
            st.sampled_from(["GET", "DELETE"]),
            _RESPONSE_IDS,
            targets,
        ),
        st.builds(
            lambda rid, params, target: FuzzRequest(
                "GET", f"{RESPONSES}/{rid}", "responses-id", None, params=params, target=target
            ),
            _RESPONSE_IDS,
            st.fixed_dictionaries(
                {"stream": st.sampled_from(["true", "false", "1", "x", ""])},
                optional={"starting_after": st.sampled_from(["0", "-1", "-2", "5", "x", "1e3", ""])},
            ),
            targets,
        ),
        st.builds(
            lambda rid, params, target: FuzzRequest(
                "GET", f"{RESPONSES}/{rid}/input_items", "responses-id", None, params=params, target=target
            ),
            _RESPONSE_IDS,
            st.fixed_dictionaries(
                {},
                optional={
                    "limit": st.sampled_from(["0", "1", "100", "101", "-1", "x", ""]),
                    "order": st.sampled_from(["asc", "desc", "up", ""]),
                    "after": _RESPONSE_IDS,
                },
            ),
            targets,
        ),
    )
