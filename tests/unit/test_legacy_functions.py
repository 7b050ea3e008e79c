"""Legacy function calling is rewritten into tool calling, and answers go back in the legacy shape."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.chat import ChatCompletion
from openai.types.chat import ChatCompletionChunk as SdkChunk

from gateway.errors import InvalidRequestError
from gateway.protocol import ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, check_tool_use
from gateway.protocol.legacy_functions import (
    answers_in_legacy_shape,
    as_tool_calling,
    legacy_call_id,
    legacy_chunk,
    legacy_response,
    uses_legacy_functions,
)
from gateway.protocol.parsing import parse_body

WEATHER = {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
TIME = {"name": "get_time", "description": "Now.", "parameters": {"type": "object"}}
QUESTION = {"role": "user", "content": "Weather in Oslo?"}
CALL = {"name": "get_weather", "arguments": '{"city": "Oslo"}'}


def request(**fields: Any) -> ChatCompletionRequest:
    body = {"model": "router", "messages": [QUESTION], **fields}
    return parse_body(json.dumps(body).encode(), ChatCompletionRequest)


def rewritten(**fields: Any) -> ChatCompletionRequest:
    legacy = request(**fields)
    assert uses_legacy_functions(legacy)
    tools = as_tool_calling(legacy)
    # What the rest of the pipeline checks passes, and nothing legacy is left.
    check_tool_use(tools.tools, tools.tool_choice, tools.messages)
    assert not uses_legacy_functions(tools)
    return tools


@pytest.mark.parametrize(
    ("function_call", "tool_choice"),
    [
        (None, None),
        ("auto", "auto"),
        ("none", "none"),
        ({"name": "get_time"}, {"type": "function", "function": {"name": "get_time"}}),
    ],
)
def test_functions_become_tools_and_function_call_the_tool_choice(function_call: Any, tool_choice: Any) -> None:
    fields: dict[str, Any] = {"functions": [WEATHER, TIME]}
    if function_call is not None:
        fields["function_call"] = function_call
    tools = rewritten(**fields)
    assert [t.model_dump(exclude_none=True) for t in tools.tools or ()] == [
        {"type": "function", "function": WEATHER},
        {"type": "function", "function": TIME},
    ]
    choice = tools.tool_choice
    assert (choice.model_dump() if hasattr(choice, "model_dump") else choice) == tool_choice
    # Legacy calls come one at a time.
    assert tools.parallel_tool_calls is False
    assert tools.functions is None and tools.function_call is None
    assert tools.needs_tool_calling() is (function_call != "none")


def test_a_legacy_exchange_becomes_a_paired_tool_exchange() -> None:
    messages = [
        QUESTION,
        {"role": "assistant", "content": None, "function_call": CALL},
        {"role": "function", "name": "get_weather", "content": "18C"},
        {"role": "assistant", "content": "It is 18C."},
        {"role": "user", "content": "And the time?"},
    ]
    tools = rewritten(functions=[WEATHER, TIME], messages=messages)
    call_turn, result_turn = tools.messages[1], tools.messages[2]
    assert call_turn.role == "assistant" and call_turn.function_call is None
    assert [c.model_dump() for c in call_turn.tool_calls or ()] == [
        {"id": legacy_call_id(1), "type": "function", "function": CALL}
    ]
    assert (result_turn.role, result_turn.tool_call_id, result_turn.text()) == ("tool", legacy_call_id(1), "18C")
    assert [m.role for m in tools.messages] == ["user", "assistant", "tool", "assistant", "user"]
    # A conversation with legacy turns that offers modern tools is rewritten, but answered with tool_calls.
    modern = request(messages=messages[:3], tools=[{"type": "function", "function": WEATHER}])
    assert uses_legacy_functions(modern) and not answers_in_legacy_shape(modern)
    assert as_tool_calling(modern).messages[2].tool_call_id == legacy_call_id(1)
    assert answers_in_legacy_shape(request(functions=[WEATHER]))


@pytest.mark.parametrize(
    ("fields", "param", "fragment"),
    [
        ({"functions": [WEATHER], "tools": [{"type": "function", "function": TIME}]}, "functions", "not both"),
        ({"functions": [WEATHER], "function_call": "auto", "tool_choice": "auto"}, "function_call", "not both"),
        ({"functions": [WEATHER], "function_call": {"name": "get_time"}}, "function_call", "not among"),
        ({"function_call": {"name": "get_time"}}, "function_call", "not among"),
        (
            {
                "functions": [WEATHER],
                "messages": [QUESTION, {"role": "function", "name": "get_weather", "content": "1"}],
            },
            "messages[1]",
            "no function_call just before it",
        ),
        (
            {
                "functions": [WEATHER, TIME],
                "messages": [
                    QUESTION,
                    {"role": "assistant", "function_call": CALL},
                    {"role": "function", "name": "get_time", "content": "noon"},
                ],
            },
            "messages[2]",
            "the call of 'get_weather' before it",
        ),
    ],
)
def test_mixed_or_unpaired_legacy_requests_are_400s_naming_the_field(
    fields: dict[str, Any], param: str, fragment: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        as_tool_calling(request(**fields))
    assert (info.value.param, info.value.status_code) == (param, 400)
    assert fragment in info.value.message


def test_an_unanswered_legacy_call_is_the_pairing_checks_400() -> None:
    messages = [QUESTION, {"role": "assistant", "function_call": CALL}, {"role": "user", "content": "well?"}]
    tools = as_tool_calling(request(functions=[WEATHER], messages=messages))
    with pytest.raises(InvalidRequestError) as info:
        check_tool_use(tools.tools, tools.tool_choice, tools.messages)
    assert info.value.param == "messages[2]"


@pytest.mark.parametrize(
    ("message", "param", "fragment"),
    [
        ({"role": "function", "content": "18C"}, "messages[1]", "needs the name"),
        ({"role": "user", "content": "x", "function_call": CALL}, "messages[1]", "only assistant messages"),
        (
            {"role": "assistant", "function_call": CALL, "tool_calls": [{"id": "c", "function": CALL}]},
            "messages[1]",
            "not both",
        ),
        ({"role": "assistant", "function_call": {"name": "get_weather"}}, "messages[1].function_call.arguments", ""),
    ],
)
def test_malformed_legacy_messages_are_400s(message: dict[str, Any], param: str, fragment: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        request(functions=[WEATHER], messages=[QUESTION, message])
    assert info.value.param == param
    assert fragment in info.value.message


def _response(message: dict[str, Any], finish_reason: str) -> ChatCompletionResponse:
    return ChatCompletionResponse.model_validate(
        {
            "id": "chatcmpl-1",
            "created": 1,
            "model": "large",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }
    )


def test_a_tool_call_answer_goes_back_as_function_call() -> None:
    tool_call = {"id": "call_fake_0", "type": "function", "function": CALL}
    answer = legacy_response(_response({"content": None, "tool_calls": [tool_call]}, "tool_calls"))
    wire = answer.model_dump(mode="json")
    assert wire["choices"][0]["message"] == {"role": "assistant", "content": None, "function_call": CALL}
    assert wire["choices"][0]["finish_reason"] == "function_call"
    # The official SDK reads it as a legacy call.
    parsed = ChatCompletion.model_validate(wire)
    assert parsed.choices[0].message.function_call is not None
    assert (parsed.choices[0].message.function_call.name, parsed.choices[0].finish_reason) == (
        "get_weather",
        "function_call",
    )
    # A text answer is unchanged.
    text = _response({"content": "Hello"}, "stop")
    assert legacy_response(text).model_dump(mode="json") == text.model_dump(mode="json")


def _chunk(delta: dict[str, Any], finish_reason: str | None = None) -> ChatCompletionChunk:
    return ChatCompletionChunk.model_validate(
        {
            "id": "chatcmpl-1",
            "created": 1,
            "model": "large",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
    )


def test_streamed_call_fragments_go_back_as_function_call_fragments() -> None:
    chunks = [
        _chunk({"role": "assistant", "content": ""}),
        _chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_fake_0",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
        _chunk({}, "tool_calls"),
    ]
    wire = [legacy_chunk(c).model_dump(mode="json", exclude_none=True) for c in chunks]
    deltas = [w["choices"][0]["delta"] for w in wire]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"function_call": {"name": "get_weather", "arguments": ""}},
        {"function_call": {"arguments": '{"city": '}},
        {"function_call": {"arguments": '"Oslo"}'}},
        {},
    ]
    assert [w["choices"][0].get("finish_reason") for w in wire] == [None, None, None, None, "function_call"]
    # The SDK reads each chunk, and the arguments join to what the model wrote.
    parsed = [SdkChunk.model_validate(w) for w in wire]
    joined = "".join(
        (p.choices[0].delta.function_call.arguments or "") for p in parsed if p.choices[0].delta.function_call
    )
    assert json.loads(joined) == {"city": "Oslo"}
    # A text chunk is passed through as it is.
    text = _chunk({"content": "Hi"})
    assert legacy_chunk(text) is text
