"""Tool calling end to end: both hosted transports against a real local upstream, the official
openai SDK against the in-process app, the ledger and the response cache on a real Redis."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.engine import ChatEngine, GenerationRequest, ToolCallPart
from gateway.errors import InvalidRequestError, UpstreamError
from gateway.redis_server import EmbeddedRedis
from tests.fakes.openai_upstream import FakeOpenAIUpstream, UpstreamBehaviour
from tests.integration.conftest import AppFactory, cached_chat, flushed_totals, gateway_config, hosted_engine, sdk

CHAT = "/v1/chat/completions"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
QUESTION = {"role": "user", "content": "Oslo"}


@pytest.fixture(params=["litellm", "openai"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def engine(upstream: FakeOpenAIUpstream, transport: str) -> ChatEngine:
    return hosted_engine(upstream.base_url, transport)


def gen(messages: list[dict[str, Any]] | None = None, **fields: Any) -> GenerationRequest:
    return GenerationRequest("req-1", messages or [QUESTION], max_tokens=50, **fields)


@pytest.mark.parametrize("stream", [False, True])
async def test_both_transports_send_tools_and_return_whole_calls(
    fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour, transport: str, stream: bool
) -> None:
    eng = engine(fake_upstream, transport)
    await eng.start()
    request = gen(tools=[WEATHER, TIME], tool_choice="auto", parallel_tool_calls=True)
    if stream:
        deltas = [d async for d in eng.stream(request)]
        # Fragments arrive as the upstream streams them: id and name, then two argument halves.
        assert sum(len(d.tool_calls) for d in deltas) == 6
        from gateway.engine import collect_completion

        async def replay() -> Any:
            for delta in deltas:
                yield delta

        completion = await collect_completion(replay())
    else:
        completion = await eng.complete(request)
    assert completion.tool_calls == (
        ToolCallPart(0, "call_fake_0", "get_weather", '{"city": "Oslo"}'),
        ToolCallPart(1, "call_fake_1", "get_time", "{}"),
    )
    assert completion.text == ""
    assert completion.finish_reason == "tool_calls"
    assert completion.completion_tokens == 3  # the fake counts argument words
    sent = upstream_behaviour.requests[-1]
    assert (sent["tools"], sent["tool_choice"], sent["parallel_tool_calls"]) == ([WEATHER, TIME], "auto", True)


async def test_a_tool_exchange_reaches_the_upstream_as_sent(
    fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour, transport: str
) -> None:
    eng = engine(fake_upstream, transport)
    await eng.start()
    call = {"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    messages = [
        QUESTION,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": "18C", "tool_call_id": "call_9"},
    ]
    completion = await eng.complete(gen(messages, tools=[WEATHER]))
    assert completion.text == "large says: tool results: 18C"
    assert completion.tool_calls == ()
    sent = upstream_behaviour.requests[-1]["messages"]
    assert sent[1]["tool_calls"] == [call] and sent[1].get("content") is None
    assert (sent[2]["role"], sent[2]["tool_call_id"], sent[2]["content"]) == ("tool", "call_9", "18C")


async def test_an_upstream_refusing_the_tools_is_the_clients_400(
    fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour, transport: str
) -> None:
    eng = engine(fake_upstream, transport)
    await eng.start()
    upstream_behaviour.fail_status = 400
    upstream_behaviour.fail_message = (
        "Invalid schema for function 'get_weather': In context=(), 'required' is ... tools[0]"
    )
    with pytest.raises(InvalidRequestError) as info:
        await eng.complete(gen(tools=[WEATHER]))
    assert (info.value.param, info.value.status_code) == ("tools", 400)
    assert "Invalid schema for function 'get_weather'" in info.value.message
    # A 400 about anything else stays the gateway's problem (502, may fail over).
    upstream_behaviour.fail_message = "something the gateway sent was wrong"
    with pytest.raises(UpstreamError):
        await eng.complete(gen(tools=[WEATHER]))


async def test_the_openai_sdk_runs_a_tool_loop_and_every_call_is_accounted(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> None:
    config = gateway_config(redis_server.url, fake_upstream.base_url)
    async with make_app(config) as (client, services):
        api = sdk(client)
        raw = await api.chat.completions.with_raw_response.create(model="router", messages=[QUESTION], tools=[WEATHER])
        first = raw.parse()
        # No learned router in this config: the default tier is the small one, which has no tools.
        assert (raw.headers["x-slm-router-tier"], raw.headers["x-slm-router-reason"]) == ("large", "tools")
        calls = first.choices[0].message.tool_calls or []
        assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
            ("call_fake_0", "get_weather", {"city": "Oslo"})
        ]
        assert first.choices[0].finish_reason == "tool_calls"

        # The same request streamed, joined by the SDK's own stream helper.
        async with api.chat.completions.stream(model="router", messages=[QUESTION], tools=[WEATHER]) as stream:
            async for _ in stream:
                pass
            streamed = await stream.get_final_completion()
        assert streamed.choices[0].finish_reason == "tool_calls"
        assert [
            (c.id, c.function.name, c.function.arguments) for c in streamed.choices[0].message.tool_calls or []
        ] == [(c.id, c.function.name, c.function.arguments) for c in calls]

        answer = await api.chat.completions.create(
            model="router",
            messages=[
                QUESTION,
                first.choices[0].message.model_dump(exclude_none=True),  # type: ignore[list-item]
                {"role": "tool", "tool_call_id": calls[0].id, "content": "18C"},
            ],
            tools=[WEATHER],
        )
        assert answer.choices[0].message.content == "large says: tool results: 18C"
        assert answer.choices[0].finish_reason == "stop"

        # Three calls to the large tier, each in the ledger with its tokens.
        totals = await flushed_totals(services)
        large = [s.counts for s in totals if s.series.tier == "large"]
        assert sum(c.requests for c in large) == 3
        assert all(c.cost_nanos > 0 for c in large)
        assert [s for s in totals if s.series.tier == "small"] == []


async def test_the_cache_keys_tools_and_returns_the_calls_on_a_hit(
    make_app: AppFactory,
    redis_server: EmbeddedRedis,
    fake_upstream: FakeOpenAIUpstream,
    upstream_behaviour: UpstreamBehaviour,
) -> None:
    body = {"model": "fake-large", "messages": [QUESTION]}
    async with cached_chat(make_app, redis_server.url, fake_upstream.base_url, body) as ask:
        plain = await ask()
        assert plain.headers["x-slm-router-cache"] == "miss"
        first = await ask(tools=[WEATHER])
        assert first.headers["x-slm-router-cache"] == "miss"  # the plain answer is not a tool call
        assert first.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
        sent = len(upstream_behaviour.requests)
        # OpenAI's defaults key the same as leaving them out.
        again = await ask(tools=[WEATHER], tool_choice="auto", parallel_tool_calls=True)
        assert again.headers["x-slm-router-cache"] == "hit"
        assert again.json()["choices"] == first.json()["choices"]
        assert len(upstream_behaviour.requests) == sent
        for changed in (
            {"tools": [WEATHER, TIME]},
            {"tools": [WEATHER], "tool_choice": "required"},
            {"tools": [WEATHER], "parallel_tool_calls": False},
            {"tools": [WEATHER], "tool_choice": "none"},
        ):
            assert (await ask(**changed)).headers["x-slm-router-cache"] == "miss", changed
        # Without tools, tool_choice "none" changes nothing: the plain entry answers.
        assert (await ask(tool_choice="none")).headers["x-slm-router-cache"] == "hit"


async def test_routing_metrics_count_the_tier_that_served_and_why(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> None:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from gateway.routing import ThresholdPolicy
    from gateway.telemetry import semconv
    from tests.unit.test_routing_policy import LengthScorer

    reader = InMemoryMetricReader()
    config = gateway_config(redis_server.url, fake_upstream.base_url)
    async with make_app(config, metric_readers=[reader]) as (client, services):
        services.chat.set_policy(ThresholdPolicy(["small", "large"], LengthScorer(), [0.5], "small"))
        plain = await client.post(CHAT, json={"model": "router", "messages": [QUESTION]})
        tools = await client.post(CHAT, json={"model": "router", "messages": [QUESTION], "tools": [WEATHER]})
        assert (plain.headers["x-slm-router-tier"], plain.headers["x-slm-router-reason"]) == ("small", "score")
        assert (tools.headers["x-slm-router-tier"], tools.headers["x-slm-router-reason"]) == ("large", "tools")
        assert plain.headers["x-slm-router-score"] == tools.headers["x-slm-router-score"]
    data = reader.get_metrics_data()
    assert data is not None
    decisions = {
        (str(attrs.get(semconv.ATTR_TIER)), str(attrs.get(semconv.ATTR_ROUTING_REASON))): point.count
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == semconv.METRIC_DECISION_DURATION
        for point in metric.data.data_points
        for attrs in [point.attributes or {}]
    }
    assert decisions == {("small", "score"): 1, ("large", "tools"): 1}
