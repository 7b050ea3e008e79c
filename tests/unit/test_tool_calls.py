"""Tool calling: validated like OpenAI, routed to tiers that have it, answered in OpenAI's shape."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.engine import (
    EngineDelta,
    GenerationRequest,
    ToolCallPart,
    collect_completion,
    merge_tool_calls,
    tool_calls_from_openai,
)
from gateway.errors import InvalidRequestError, RateLimitError, UnsupportedParameterError, UpstreamError
from gateway.protocol import ChatCompletionRequest, check_tool_use
from gateway.protocol.parsing import parse_body
from gateway.routing.policy import ThresholdPolicy
from gateway.serving import ChatCompletionService, ChatResult, StreamResult, Tier
from router_models.conversation import ChatTurn, turn_from_message
from tests.fakes.engines import ScriptedEngine
from tests.fakes.services import FixedScorer, two_tier_service

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
USER = {"role": "user", "content": "Weather in Oslo?"}


def parse(model: str = "router", **fields: Any) -> ChatCompletionRequest:
    body = {"model": model, "messages": [USER], **fields}
    return parse_body(json.dumps(body).encode(), ChatCompletionRequest)


def validate(**fields: Any) -> None:
    request = parse(**fields)
    check_tool_use(request.tools, request.tool_choice, request.messages)


def service(
    small: ScriptedEngine | None = None,
    large: ScriptedEngine | None = None,
    *,
    score: float | None = 0.1,
    large_tools: bool = True,
) -> ChatCompletionService:
    return two_tier_service(
        small or ScriptedEngine(model="small-model"),
        large or ScriptedEngine(model="large-model"),
        score=score,
        supports_tools=large_tools,
    )


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "param", "fragment"),
    [
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name", "pattern"),
        ({"tools": [{"type": "retrieval", "function": {"name": "f"}}]}, "tools[0].type", "'function'"),
        ({"tools": [{"type": "function"}]}, "tools[0].function", "required"),
        ({"tools": [WEATHER] * 129}, "tools", "at most 128"),
        ({"tool_choice": "sometimes", "tools": [WEATHER]}, "tool_choice", "none"),
        ({"parallel_tool_calls": "maybe"}, "parallel_tool_calls", "boolean"),
        (
            {"messages": [USER, {"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]}]},
            "messages[1].tool_calls[0].function",
            "required",
        ),
        ({"messages": [{"role": "tool", "content": "22C"}]}, "messages[0]", "tool_call_id"),
        ({"messages": [{"role": "user", "content": "x", "tool_calls": [CALL]}]}, "messages[0]", "only assistant"),
    ],
)
def test_malformed_tool_fields_are_400s_naming_the_field(fields: dict[str, Any], param: str, fragment: str) -> None:
    body = {"model": "router", "messages": [USER], **fields}
    with pytest.raises(InvalidRequestError) as info:
        parse_body(json.dumps(body).encode(), ChatCompletionRequest)
    assert info.value.param == param
    assert fragment in info.value.message


@pytest.mark.parametrize(
    ("fields", "param", "fragment"),
    [
        ({"tools": [WEATHER, WEATHER]}, "tools", "repeated: get_weather"),
        ({"tool_choice": "required"}, "tool_choice", "needs 'tools'"),
        ({"tool_choice": {"type": "function", "function": {"name": "get_weather"}}}, "tool_choice", "needs 'tools'"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_time"}}},
            "tool_choice",
            "'get_time', which is not among the tools",
        ),
        (
            {"messages": [USER, {"role": "tool", "tool_call_id": "call_1", "content": "22C"}]},
            "messages[1].tool_call_id",
            "did not make",
        ),
        (
            {"messages": [USER, {"role": "assistant", "content": None, "tool_calls": [CALL]}, USER]},
            "messages[2]",
            "unanswered: call_1",
        ),
        ({"messages": [USER, {"role": "assistant", "content": None, "tool_calls": [CALL]}]}, "messages", "call_1"),
        (
            {
                "messages": [
                    USER,
                    {"role": "assistant", "content": None, "tool_calls": [CALL]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "22C"},
                    {"role": "tool", "tool_call_id": "call_1", "content": "again"},
                ]
            },
            "messages[3].tool_call_id",
            "did not make",
        ),
        (
            {"messages": [USER, {"role": "assistant", "content": None, "tool_calls": [CALL, CALL]}]},
            "messages[1].tool_calls",
            "repeats",
        ),
    ],
)
def test_inconsistent_tool_use_is_refused_like_openai(fields: dict[str, Any], param: str, fragment: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        validate(**fields)
    assert info.value.param == param
    assert fragment in info.value.message


def test_a_complete_tool_round_trip_validates() -> None:
    validate(
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        parallel_tool_calls=False,
        messages=[
            USER,
            {"role": "assistant", "content": None, "tool_calls": [CALL, {**CALL, "id": "call_2"}]},
            {"role": "tool", "tool_call_id": "call_2", "content": "21C"},
            {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "22C"}]},
            {"role": "assistant", "content": "22C in Oslo."},
            {"role": "user", "content": "And the time?"},
        ],
    )


# -- routing ------------------------------------------------------------------------------------


async def test_a_routed_request_with_tools_goes_to_a_tier_that_has_them() -> None:
    large = ScriptedEngine(model="large-model")
    chat = service(large=large, score=0.1)  # the score alone picks the small tier
    result = await chat.create(parse(tools=[WEATHER]))
    assert isinstance(result, ChatResult)
    assert result.headers["x-slm-router-tier"] == "large"
    assert result.headers["x-slm-router-reason"] == "tools"
    assert result.headers["x-slm-router-score"] == "0.100000"  # still scored and reported
    assert large.requests[0].tools == [WEATHER]


async def test_tool_results_in_the_conversation_need_a_tool_calling_tier_too() -> None:
    large = ScriptedEngine(["It is 22C."], model="large-model")
    messages = [
        USER,
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "22C"},
    ]
    result = await service(large=large).create(parse(messages=messages))
    assert isinstance(result, ChatResult)
    assert result.headers["x-slm-router-reason"] == "tools"
    sent = large.requests[0].messages
    assert sent[1] == {"role": "assistant", "content": None, "tool_calls": [CALL]}
    assert sent[2] == {"role": "tool", "content": "22C", "tool_call_id": "call_1"}
    assert result.response.choices[0].message.content == "It is 22C."


async def test_declined_tools_stay_on_the_scored_tier_without_the_definitions() -> None:
    small = ScriptedEngine(["plain"], model="small-model")
    result = await service(small=small).create(parse(tools=[WEATHER], tool_choice="none"))
    assert isinstance(result, ChatResult)
    assert result.headers["x-slm-router-tier"] == "small"
    assert (small.requests[0].tools, small.requests[0].tool_choice) == (None, None)
    assert result.response.choices[0].message.content == "plain"


async def test_declined_tools_reach_a_tool_calling_tier_as_sent() -> None:
    large = ScriptedEngine(["plain"], model="large-model")
    await service(large=large, score=0.9).create(parse(tools=[WEATHER], tool_choice="none"))
    assert (large.requests[0].tools, large.requests[0].tool_choice) == ([WEATHER], "none")
    assert large.requests[0].openai_optional_fields()["tool_choice"] == "none"


async def test_a_named_model_without_tool_calling_is_a_400_naming_the_ones_with_it() -> None:
    with pytest.raises(UnsupportedParameterError) as info:
        await service().create(parse(model="small-model", tools=[WEATHER]))
    assert info.value.param == "tools"
    assert "small-model does not support tool calling; models that do: large-model" in info.value.message


async def test_without_any_tool_calling_tier_the_request_is_refused() -> None:
    with pytest.raises(UnsupportedParameterError) as info:
        await service(large_tools=False).create(parse(tools=[WEATHER]))
    assert (info.value.param, info.value.status_code) == ("tools", 400)
    assert "no model here supports tool calling" in info.value.message


async def test_failover_never_moves_a_tool_request_to_a_tier_without_tools() -> None:
    large = ScriptedEngine(model="large-model", fail_before=UpstreamError("down"))
    small = ScriptedEngine(model="small-model")
    with pytest.raises(UpstreamError):
        await service(small=small, large=large).create(parse(tools=[WEATHER]))
    assert small.requests == []
    # A plain request that the large tier fails does fall back to the small one.
    plain_large = ScriptedEngine(model="large-model", fail_before=UpstreamError("down"))
    result = await service(small=small, large=plain_large, score=0.9).create(parse())
    assert isinstance(result, ChatResult)
    assert result.headers["x-slm-router-reason"] == "fallback:error"


async def test_a_spent_key_cannot_call_tools_when_only_a_dearer_tier_has_them() -> None:
    with pytest.raises(RateLimitError) as info:
        await service().create(parse(tools=[WEATHER]), over_budget=True)
    assert info.value.code == "budget_exhausted"
    assert "does not support tool calling" in info.value.message


def test_the_router_reads_tool_calls_and_results_as_text() -> None:
    assert turn_from_message({"role": "assistant", "content": None, "tool_calls": [CALL]}) == ChatTurn(
        "assistant", 'get_weather({"city": "Oslo"})'
    )
    assert turn_from_message({"role": "tool", "content": "22C", "tool_call_id": "call_1"}) == ChatTurn("tool", "22C")


async def test_routing_scores_the_whole_conversation_including_tool_turns() -> None:
    seen: list[list[dict[str, str]]] = []

    class Recording(FixedScorer):
        async def score(self, messages: Any) -> float:
            seen.append(list(messages))
            return 0.9

    tiers = [
        Tier("small", "small-model", ScriptedEngine(model="small-model"), 16, 5.0),
        Tier("large", "large-model", ScriptedEngine(model="large-model"), 16, 5.0, supports_tools=True),
    ]
    policy = ThresholdPolicy(["small", "large"], Recording(0.9), [0.5], "small")
    chat = ChatCompletionService(
        tiers, virtual_model_name="router", default_tier="small", max_tokens_limit=9, policy=policy
    )
    messages = [
        USER,
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "22C"},
    ]
    result = await chat.create(parse(messages=messages))
    assert isinstance(result, ChatResult)
    assert [m["role"] for m in seen[-1]] == ["user", "assistant", "tool"]
    assert seen[-1][2]["content"] == "22C"
    assert result.headers["x-slm-router-reason"] == "score"


# -- responses ----------------------------------------------------------------------------------


async def test_a_non_stream_tool_call_answer_has_null_content_and_whole_calls() -> None:
    result = await service().create(parse(tools=[WEATHER, TIME]))
    assert isinstance(result, ChatResult)
    choice = result.response.model_dump(mode="json")["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    arguments = json.dumps({"q": "Weather in Oslo?"})
    assert choice["message"]["tool_calls"] == [
        {"id": "call_0_get_weather", "type": "function", "function": {"name": "get_weather", "arguments": arguments}},
        {"id": "call_1_get_time", "type": "function", "function": {"name": "get_time", "arguments": arguments}},
    ]


async def test_a_text_answer_has_no_tool_calls_field() -> None:
    result = await service(score=0.9).create(parse())
    assert isinstance(result, ChatResult)
    message = result.response.model_dump(mode="json")["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "Hello, world"}


async def test_the_named_tool_and_parallel_false_limit_the_calls() -> None:
    named = await service().create(
        parse(tools=[WEATHER, TIME], tool_choice={"type": "function", "function": {"name": "get_time"}})
    )
    single = await service().create(parse(tools=[WEATHER, TIME], parallel_tool_calls=False))
    assert isinstance(named, ChatResult) and isinstance(single, ChatResult)
    assert [c.function.name for c in named.response.choices[0].message.tool_calls or []] == ["get_time"]
    assert [c.function.name for c in single.response.choices[0].message.tool_calls or []] == ["get_weather"]


async def test_a_stream_passes_tool_call_fragments_and_ends_with_tool_calls() -> None:
    result = await service().create(parse(tools=[WEATHER], stream=True))
    assert isinstance(result, StreamResult)
    frames = [frame.decode() async for frame in result.frames]
    chunks = [json.loads(f[6:]) for f in frames if f.startswith("data: {")]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": ""}
    fragments = [d["tool_calls"] for d in deltas if "tool_calls" in d]
    arguments = json.dumps({"q": "Weather in Oslo?"})
    assert fragments == [
        [
            {
                "index": 0,
                "id": "call_0_get_weather",
                "type": "function",
                "function": {"name": "get_weather", "arguments": arguments[:6]},
            }
        ],
        [{"index": 0, "function": {"arguments": arguments[6:]}}],
    ]
    assert all("content" not in d for d in deltas if "tool_calls" in d)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert frames[-1] == "data: [DONE]\n\n"


# -- engine records -----------------------------------------------------------------------------


def test_fragments_merge_by_index_in_order() -> None:
    parts = [
        ToolCallPart(1, "b", "second", '{"x"'),
        ToolCallPart(0, "a", "first", "{"),
        ToolCallPart(1, arguments=": 1}"),
        ToolCallPart(0, arguments="}"),
    ]
    assert merge_tool_calls(parts) == (ToolCallPart(0, "a", "first", "{}"), ToolCallPart(1, "b", "second", '{"x": 1}'))


async def test_collect_completion_joins_the_fragments() -> None:
    async def deltas() -> Any:
        yield EngineDelta("", tool_calls=(ToolCallPart(0, "a", "f", '{"q"'),))
        yield EngineDelta("", "tool_calls", 3, 2, "m", tool_calls=(ToolCallPart(0, arguments=': "x"}'),))

    completion = await collect_completion(deltas())
    assert completion.tool_calls == (ToolCallPart(0, "a", "f", '{"q": "x"}'),)
    assert completion.finish_reason == "tool_calls"


def test_upstream_calls_parse_from_dicts_and_sdk_objects() -> None:
    as_dict = tool_calls_from_openai([CALL, {"id": "c2", "function": {"name": "g", "arguments": None}}])
    assert as_dict == (ToolCallPart(0, "call_1", "get_weather", '{"city": "Oslo"}'), ToolCallPart(1, "c2", "g", ""))
    fragment = SimpleNamespace(index=3, id=None, function=SimpleNamespace(name=None, arguments='"}'))
    assert tool_calls_from_openai([fragment]) == (ToolCallPart(3, None, None, '"}'),)
    assert tool_calls_from_openai(None) == ()


def test_engines_get_tools_in_openai_shape() -> None:
    request = GenerationRequest(
        "r",
        [],
        8,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
    )
    assert request.calls_tools
    fields = request.openai_optional_fields()
    assert fields["tools"] == [WEATHER]
    assert fields["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert fields["parallel_tool_calls"] is False
    assert not GenerationRequest("r", [], 8, tools=[WEATHER], tool_choice="none").calls_tools
    assert "tools" not in GenerationRequest("r", [], 8).openai_optional_fields()
