"""A call that ``tool_choice`` forces (naming one function, or ``required`` with one offered) can
be made by a tier without tool calling (vLLM constrains decoding to the function's schema):
routing keeps such requests on it."""

from __future__ import annotations

from typing import Any

import pytest

from deployments.vllm_engine import _finish_reason, _forced_call_instruction, _with_system_note
from deployments.vllm_tool_calls import function_parameters
from gateway.engine import GenerationRequest
from gateway.errors import RateLimitError, UpstreamError
from gateway.routing.policy import ThresholdPolicy
from gateway.serving import ChatCompletionService, ChatResult, Tier
from tests.fakes.engines import ScriptedEngine
from tests.unit.test_tool_calls import CALL, TIME, USER, WEATHER, FixedScorer, parse

NAMED = {"type": "function", "function": {"name": "get_weather"}}
TOOL_TURNS = [
    USER,
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": "22C"},
]


def service(small: ScriptedEngine, large: ScriptedEngine | None = None, *, score: float = 0.1) -> ChatCompletionService:
    tiers = [
        Tier("small", "small-model", small, 16, 5.0, forced_tool_calls=True),
        Tier("large", "large-model", large or ScriptedEngine(model="large-model"), 16, 5.0, supports_tools=True),
    ]
    policy = ThresholdPolicy(["small", "large"], FixedScorer(score), [0.5], "small")
    return ChatCompletionService(
        tiers, virtual_model_name="router", default_tier="small", max_tokens_limit=100, policy=policy
    )


@pytest.mark.parametrize(
    ("fields", "need"),
    [
        ({}, "none"),
        ({"tools": [WEATHER], "tool_choice": "none"}, "none"),
        ({"tools": [WEATHER, TIME], "tool_choice": NAMED}, "forced"),
        ({"tools": [WEATHER], "tool_choice": "required"}, "forced"),
        ({"tools": [WEATHER]}, "any"),
        # Required among several: the model chooses, which needs tool calling.
        ({"tools": [WEATHER, TIME], "tool_choice": "required"}, "any"),
        # A forced call after tool turns: the model must read them, which needs tool calling.
        ({"tools": [WEATHER], "tool_choice": NAMED, "messages": TOOL_TURNS}, "any"),
        ({"messages": TOOL_TURNS}, "any"),
    ],
)
def test_what_tool_calling_a_request_needs(fields: dict[str, Any], need: str) -> None:
    assert parse(**fields).tool_need() == need


async def test_a_forced_call_stays_on_the_scored_small_tier_with_its_tools() -> None:
    small = ScriptedEngine(model="small-model")
    result = await service(small).create(parse(tools=[WEATHER, TIME], tool_choice=NAMED))
    assert isinstance(result, ChatResult)
    assert (result.headers["x-slm-router-tier"], result.headers["x-slm-router-reason"]) == ("small", "score")
    sent = small.requests[0]
    assert (sent.tools, sent.tool_choice) == ([WEATHER, TIME], NAMED)
    assert sent.forced_function == WEATHER["function"]
    # Named directly, the small model serves it too (no 400 naming the models with tool calling),
    # and "required" with one function offered forces that one.
    direct = await service(small).create(parse(model="small-model", tools=[WEATHER], tool_choice="required"))
    assert isinstance(direct, ChatResult) and direct.headers["x-slm-router-tier"] == "small"
    assert small.requests[-1].forced_function == WEATHER["function"]


@pytest.mark.parametrize(
    "fields",
    [
        {"tools": [WEATHER]},
        {"tools": [WEATHER, TIME], "tool_choice": "required"},
        {"tools": [WEATHER], "tool_choice": NAMED, "messages": TOOL_TURNS},
    ],
)
async def test_other_tool_use_still_moves_to_a_tier_with_tool_calling(fields: dict[str, Any]) -> None:
    small, large = ScriptedEngine(model="small-model"), ScriptedEngine(["ok"], model="large-model")
    result = await service(small, large).create(parse(**fields))
    assert isinstance(result, ChatResult)
    assert (result.headers["x-slm-router-tier"], result.headers["x-slm-router-reason"]) == ("large", "tools")
    assert small.requests == []


async def test_a_forced_call_fails_over_both_ways_and_a_spent_key_keeps_it_small() -> None:
    # Escalation: the small tier fails, the large one (with tool calling) makes the call.
    failing_small = ScriptedEngine(model="small-model", fail_before=UpstreamError("down"))
    large = ScriptedEngine(model="large-model")
    up = await service(failing_small, large).create(parse(tools=[WEATHER], tool_choice=NAMED))
    assert isinstance(up, ChatResult) and up.headers["x-slm-router-reason"] == "escalated:error"
    # A tier with tool calling gets the request as sent, not told to force the call itself.
    assert (large.requests[0].tool_choice, large.requests[0].forced_function) == (NAMED, None)
    # Fallback: scored large, the large tier fails, the small one makes the call.
    small = ScriptedEngine(model="small-model")
    failing_large = ScriptedEngine(model="large-model", fail_before=UpstreamError("down"))
    down = await service(small, failing_large, score=0.9).create(parse(tools=[WEATHER], tool_choice=NAMED))
    assert isinstance(down, ChatResult) and down.headers["x-slm-router-reason"] == "fallback:error"
    assert small.requests[-1].tools == [WEATHER]
    # A spent key's routed requests go to the cheapest tier: it can make a forced call, not others.
    spent = await service(small, score=0.9).create(parse(tools=[WEATHER], tool_choice=NAMED), over_budget=True)
    assert isinstance(spent, ChatResult) and spent.headers["x-slm-router-tier"] == "small"
    with pytest.raises(RateLimitError):
        await service(small, score=0.9).create(parse(tools=[WEATHER]), over_budget=True)


def test_the_forced_function_is_found_only_without_tool_turns() -> None:
    def forced(messages: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any] | None:
        request = parse(messages=messages or [USER], **fields)
        function = request.forced_function()
        return function.model_dump(exclude_none=True) if function is not None else None

    assert forced(tools=[WEATHER, TIME], tool_choice=NAMED) == WEATHER["function"]
    assert forced(tools=[WEATHER, TIME], tool_choice="required") is None  # two offered
    assert forced(tools=[TIME], tool_choice="required") == TIME["function"]
    assert forced(tools=[WEATHER, TIME], tool_choice="auto") is None
    assert forced(TOOL_TURNS, tools=[WEATHER, TIME], tool_choice=NAMED) is None
    assert forced(tools=[WEATHER, TIME], tool_choice={"type": "function", "function": {"name": "missing"}}) is None


def test_a_forced_call_finishes_as_openai_finishes_it() -> None:
    def finish(choice: Any, reason: str | None) -> str | None:
        function = WEATHER["function"] if choice != "auto" else None
        request = GenerationRequest("r", [USER], 10, tools=[WEATHER], tool_choice=choice, forced_function=function)
        return _finish_reason(reason, request, request.forced_function)

    assert finish(NAMED, "stop") == "stop"
    assert finish("required", "stop") == "tool_calls"
    assert finish("required", "length") == "length"
    assert finish("auto", "stop") == "stop"


def test_the_small_model_is_told_of_the_forced_function_in_the_system_turn() -> None:
    note = _forced_call_instruction(WEATHER["function"])
    assert "get_weather (Weather in a city)" in note
    assert '{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}' in note
    # Appended to a leading system turn, else a system turn of its own (templates take it first only).
    system = {"role": "system", "content": "Be brief."}
    assert _with_system_note([system, USER], note) == [{"role": "system", "content": f"Be brief.\n\n{note}"}, USER]
    assert _with_system_note([USER], note) == [{"role": "system", "content": note}, USER]
    # A function without parameters takes an empty object.
    assert function_parameters({"name": "now"}) == {"type": "object", "properties": {}}
    assert function_parameters(TIME["function"]) == {"type": "object"}
