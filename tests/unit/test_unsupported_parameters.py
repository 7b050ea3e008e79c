"""Known OpenAI parameters the gateway does not implement are refused; their "off" values pass."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from openai.resources.chat.completions import AsyncCompletions
from openai.resources.completions import AsyncCompletions as AsyncTextCompletions
from openai.resources.responses import AsyncResponses
from pydantic import BaseModel

from gateway.errors import UnsupportedParameterError
from gateway.protocol import TOLERATED_PARAMETERS, UNSUPPORTED_PARAMETERS, ChatCompletionRequest, reject_unsupported
from gateway.protocol.completions import (
    TOLERATED_COMPLETIONS_PARAMETERS,
    UNSUPPORTED_COMPLETIONS_PARAMETERS,
    CompletionRequest,
)
from gateway.protocol.responses import (
    TOLERATED_RESPONSES_PARAMETERS,
    UNSUPPORTED_RESPONSES_PARAMETERS,
    ResponsesRequest,
)

MESSAGES = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def request(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "router", "messages": MESSAGES, **fields})


@pytest.mark.parametrize(
    ("fields", "param", "fragment"),
    [
        ({"modalities": ["text", "audio"]}, "modalities", "text"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio", "audio"),
        ({"moderation": {"model": "omni-moderation-latest"}}, "moderation", "moderate input and output"),
        ({"web_search_options": {}}, "web_search_options", "web search"),
    ],
)
def test_switched_on_parameters_are_refused(fields: dict[str, Any], param: str, fragment: str) -> None:
    with pytest.raises(UnsupportedParameterError) as info:
        reject_unsupported(request(**fields))
    error = info.value
    assert error.param == param
    assert error.code == "unsupported_parameter"
    assert error.status_code == 400
    assert fragment in error.message


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"n": 1},
        # Implemented (tests/unit/test_choices.py).
        {"n": 4},
        {"tools": []},
        {"tools": None, "tool_choice": "none"},
        {"tool_choice": "auto", "parallel_tool_calls": False},
        # Implemented (tests/unit/test_tool_calls.py): routed to tiers with tool calling.
        {"tools": [TOOL]},
        {"tools": [TOOL], "tool_choice": "required"},
        {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        {"tools": [TOOL], "tool_choice": "none"},
        # Implemented (tests/unit/test_legacy_functions.py): served as tool calling.
        {"functions": [{"name": "f", "parameters": {}}]},
        {"functions": [{"name": "f", "parameters": {}}], "function_call": {"name": "f"}},
        {"functions": [], "function_call": "none"},
        # Implemented (tests/unit/test_response_format.py), so never refused here.
        {"response_format": {"type": "text"}},
        {"response_format": {"type": "json_object"}},
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}},
        {"logprobs": False, "top_logprobs": 0},
        # Implemented (tests/unit/test_logprobs.py).
        {"logprobs": True},
        {"logprobs": True, "top_logprobs": 5},
        {"logit_bias": {}},
        # Implemented (tests/unit/test_logit_bias.py) for a request that names a model.
        {"logit_bias": {"50256": -100}},
        {"modalities": ["text"]},
        {"audio": None},
        {"moderation": None, "web_search_options": None, "reasoning_effort": None, "verbosity": "medium"},
        # Implemented (tests/unit/test_model_params.py): sent to the tiers whose model takes them.
        {"reasoning_effort": "high", "verbosity": "low"},
        # Tolerated: they do not change what a client parses.
        {"metadata": {"a": 1}, "store": False, "service_tier": "auto", "prediction": {"type": "content"}},
        {"safety_identifier": "u1", "prompt_cache_key": "k", "prompt_cache_retention": "24h"},
        {"some_future_field": [1, 2, 3]},
    ],
)
def test_off_values_and_other_fields_pass(fields: dict[str, Any]) -> None:
    reject_unsupported(request(**fields))


def test_every_rule_names_a_distinct_parameter() -> None:
    names = [name for name, _, _ in UNSUPPORTED_PARAMETERS]
    assert len(names) == len(set(names))
    # None of them is a field the request model implements (those are validated, not refused).
    assert not set(names) & set(ChatCompletionRequest.model_fields)


@pytest.mark.parametrize(
    ("create", "request_model", "refused_rules", "tolerated"),
    [
        (AsyncCompletions.create, ChatCompletionRequest, UNSUPPORTED_PARAMETERS, TOLERATED_PARAMETERS),
        (AsyncResponses.create, ResponsesRequest, UNSUPPORTED_RESPONSES_PARAMETERS, TOLERATED_RESPONSES_PARAMETERS),
        (
            AsyncTextCompletions.create,
            CompletionRequest,
            UNSUPPORTED_COMPLETIONS_PARAMETERS,
            TOLERATED_COMPLETIONS_PARAMETERS,
        ),
    ],
    ids=["chat", "responses", "completions"],
)
def test_every_parameter_of_the_openai_sdk_is_decided(
    create: Any, request_model: type[BaseModel], refused_rules: Any, tolerated: frozenset[str]
) -> None:
    # A parameter the SDK sends is implemented (a request field), refused, or tolerated on
    # purpose; a new SDK release that adds one fails here until it is decided, instead of
    # being ignored silently as an unknown field.
    sdk_parameters = set(inspect.signature(create).parameters)
    sdk_parameters -= {"self", "extra_headers", "extra_query", "extra_body", "timeout"}
    refused = {name for name, _, _ in refused_rules}
    implemented = set(request_model.model_fields)
    assert sdk_parameters - (implemented | refused | tolerated) == set()
    assert not tolerated & (refused | implemented)
