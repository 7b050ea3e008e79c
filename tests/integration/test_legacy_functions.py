"""Legacy function calling end to end: the official openai SDK's ``functions``/``function_call``
against the in-process app, the fake OpenAI upstream (which gets tools) and a real Redis ledger."""

from __future__ import annotations

import json
from typing import Any

from gateway.protocol.legacy_functions import legacy_call_id
from gateway.redis_server import EmbeddedRedis
from tests.fakes.openai_upstream import FakeOpenAIUpstream, UpstreamBehaviour
from tests.integration.conftest import AppFactory, flushed_totals, gateway_config, sdk

CHAT = "/v1/chat/completions"
WEATHER: dict[str, Any] = {
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
TIME: dict[str, Any] = {"name": "get_time", "parameters": {"type": "object"}}
QUESTION = {"role": "user", "content": "Oslo"}


async def test_the_openai_sdk_runs_a_legacy_function_loop(
    make_app: AppFactory,
    redis_server: EmbeddedRedis,
    fake_upstream: FakeOpenAIUpstream,
    upstream_behaviour: UpstreamBehaviour,
) -> None:
    config = gateway_config(redis_server.url, fake_upstream.base_url)
    async with make_app(config) as (client, services):
        api = sdk(client)
        raw = await api.chat.completions.with_raw_response.create(
            model="router",
            messages=[QUESTION],  # type: ignore[list-item]
            functions=[WEATHER, TIME],  # type: ignore[list-item]
        )
        first = raw.parse()
        # Only tool-calling tiers serve it, as for tools.
        assert (raw.headers["x-slm-router-tier"], raw.headers["x-slm-router-reason"]) == ("large", "tools")
        message = first.choices[0].message
        assert message.tool_calls is None and message.function_call is not None
        assert (message.function_call.name, json.loads(message.function_call.arguments)) == (
            "get_weather",
            {"city": "Oslo"},
        )
        assert first.choices[0].finish_reason == "function_call"
        # The upstream got the tool-calling request it means, one call at a time.
        sent = upstream_behaviour.requests[-1]
        assert sent["tools"] == [{"type": "function", "function": WEATHER}, {"type": "function", "function": TIME}]
        assert sent["parallel_tool_calls"] is False
        assert "functions" not in sent and "function_call" not in sent

        # The same streamed: function_call fragments, joined here as an old client joins them.
        stream = await api.chat.completions.create(
            model="router",
            messages=[QUESTION],  # type: ignore[list-item]
            functions=[WEATHER, TIME],  # type: ignore[list-item]
            stream=True,
        )
        name, arguments, finish = "", "", None
        async for chunk in stream:
            for choice in chunk.choices:
                assert not choice.delta.tool_calls
                if choice.delta.function_call is not None:
                    name += choice.delta.function_call.name or ""
                    arguments += choice.delta.function_call.arguments or ""
                finish = choice.finish_reason or finish
        assert (name, arguments, finish) == (
            message.function_call.name,
            message.function_call.arguments,
            "function_call",
        )

        # function_call naming a function forces it.
        named = await api.chat.completions.create(
            model="router",
            messages=[QUESTION],  # type: ignore[list-item]
            functions=[WEATHER, TIME],  # type: ignore[list-item]
            function_call={"name": "get_time"},
        )
        assert named.choices[0].message.function_call is not None
        assert named.choices[0].message.function_call.name == "get_time"
        assert upstream_behaviour.requests[-1]["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}

        # The function's result goes back as a "function" message; the model answers in text.
        answer = await api.chat.completions.create(
            model="router",
            messages=[
                QUESTION,
                {"role": "assistant", "content": None, "function_call": message.function_call.model_dump()},
                {"role": "function", "name": "get_weather", "content": "18C"},
            ],  # type: ignore[list-item]
            functions=[WEATHER, TIME],  # type: ignore[list-item]
        )
        assert answer.choices[0].message.content == "large says: tool results: 18C"
        assert answer.choices[0].finish_reason == "stop"
        sent_messages = upstream_behaviour.requests[-1]["messages"]
        assert sent_messages[1]["tool_calls"] == [
            {"id": legacy_call_id(1), "type": "function", "function": message.function_call.model_dump()}
        ]
        assert (sent_messages[2]["role"], sent_messages[2]["tool_call_id"], sent_messages[2]["content"]) == (
            "tool",
            legacy_call_id(1),
            "18C",
        )

        # Declined for this turn: a text answer from the scored tier, no tools sent anywhere.
        declined = await api.chat.completions.with_raw_response.create(
            model="router",
            messages=[QUESTION],  # type: ignore[list-item]
            functions=[WEATHER],  # type: ignore[list-item]
            function_call="none",
        )
        assert declined.headers["x-slm-router-tier"] == "small"
        assert declined.parse().choices[0].message.function_call is None

        # Four large-tier answers and one small one, each in the ledger.
        totals = await flushed_totals(services)
        by_tier = {tier: sum(s.counts.requests for s in totals if s.series.tier == tier) for tier in ("small", "large")}
        assert by_tier == {"small": 1, "large": 4}


async def test_bad_legacy_requests_are_400s_naming_the_field_with_no_upstream_call(
    make_app: AppFactory,
    redis_server: EmbeddedRedis,
    fake_upstream: FakeOpenAIUpstream,
    upstream_behaviour: UpstreamBehaviour,
) -> None:
    config = gateway_config(redis_server.url, fake_upstream.base_url)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"functions": [WEATHER], "tools": [{"type": "function", "function": TIME}]}, "functions"),
        ({"functions": [WEATHER], "function_call": {"name": "get_time"}}, "function_call"),
        ({"functions": [{"name": "bad name!"}]}, "functions[0].name"),
        ({"messages": [QUESTION, {"role": "function", "name": "get_weather", "content": "18C"}]}, "messages[1]"),
        ({"messages": [QUESTION, {"role": "function", "content": "18C"}]}, "messages[1]"),
        ({"function_call": "sometimes"}, "function_call"),
    ]
    async with make_app(config) as (client, _):
        sent = len(upstream_behaviour.requests)
        for fields, param in cases:
            response = await client.post(CHAT, json={"model": "router", "messages": [QUESTION], **fields})
            assert response.status_code == 400, (fields, response.text)
            error = response.json()["error"]
            assert (error["param"], error["type"]) == (param, "invalid_request_error"), fields
        assert len(upstream_behaviour.requests) == sent
