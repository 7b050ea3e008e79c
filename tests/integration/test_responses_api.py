"""The Responses API (``/v1/responses``) end to end: the official openai SDK over the in-process
app, a real Redis for stored responses and the ledger, the fake upstream as the large tier."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from gateway.redis_server import EmbeddedRedis
from gateway.serving.assembly import ReplicaServices
from tests.fakes.engines import ScriptedEngine
from tests.fakes.openai_upstream import FakeOpenAIUpstream, UpstreamBehaviour
from tests.integration.conftest import AppFactory, flushed_totals, gateway_config, sdk

RESPONSES = "/v1/responses"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


App = tuple[httpx.AsyncClient, ReplicaServices]


@pytest.fixture()
async def app(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> AsyncIterator[App]:
    """One in-process replica over the session's Redis, the fake upstream as the large tier."""
    async with make_app(gateway_config(redis_server.url, fake_upstream.base_url)) as (client, services):
        yield client, services


async def ledger_requests(services: ReplicaServices) -> dict[str, int]:
    """Requests per tier in the ledger, after flushing this replica's buffer."""
    counts: dict[str, int] = {}
    for series in await flushed_totals(services):
        counts[series.series.tier] = counts.get(series.series.tier, 0) + series.counts.requests
    return counts


async def test_create_answers_like_the_chat_pipeline_and_is_accounted(
    app: App, upstream_behaviour: UpstreamBehaviour
) -> None:
    client, services = app
    api = sdk(client)
    raw = await api.responses.with_raw_response.create(
        model="fake-large", input="Say hi", instructions="Be brief", metadata={"run": "1"}, temperature=0.5
    )
    response = raw.parse()
    assert response.output_text == "large says: Say hi"
    assert (response.status, response.object, response.model) == ("completed", "response", "fake-large")
    assert response.id.startswith("resp_") and response.output[0].id.startswith("msg_")
    assert (response.instructions, response.metadata, response.temperature) == ("Be brief", {"run": "1"}, 0.5)
    assert response.usage is not None and response.usage.output_tokens == 4
    assert response.usage.total_tokens == response.usage.input_tokens + 4
    # The routing and cost headers of the chat pipeline, and its cost figures in usage.
    assert raw.headers["x-slm-router-tier"] == "large"
    assert float(raw.headers["x-slm-router-cost-usd"]) > 0
    assert response.usage.model_extra is not None and response.usage.model_extra["slm_router"]["cost_usd"] > 0
    # Instructions lead as a system message; sampling parameters travel.
    sent = upstream_behaviour.requests[-1]
    assert sent["messages"] == [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Say hi"}]
    assert sent["temperature"] == 0.5
    assert await ledger_requests(services) == {"large": 1}


async def test_previous_response_id_continues_the_stored_conversation(
    app: App, upstream_behaviour: UpstreamBehaviour
) -> None:
    client, _ = app
    api = sdk(client)
    first = await api.responses.create(model="fake-large", input="Oslo", instructions="Only the first time")
    second = await api.responses.create(
        model="fake-large", input=[{"role": "user", "content": "and Bergen"}], previous_response_id=first.id
    )
    assert second.previous_response_id == first.id
    assert second.output_text == "large says: and Bergen"
    # The earlier input and answer are replayed; the earlier instructions are not.
    assert upstream_behaviour.requests[-1]["messages"] == [
        {"role": "user", "content": "Oslo"},
        {"role": "assistant", "content": "large says: Oslo"},
        {"role": "user", "content": "and Bergen"},
    ]
    third = await api.responses.create(model="fake-large", input="and Tromsø", previous_response_id=second.id)
    assert [m["content"] for m in upstream_behaviour.requests[-1]["messages"]] == [
        "Oslo",
        "large says: Oslo",
        "and Bergen",
        "large says: and Bergen",
        "and Tromsø",
    ]
    # Stored: GET returns what the client got; DELETE forgets it.
    assert (await api.responses.retrieve(third.id)).model_dump() == third.model_dump()
    deleted = await client.delete(f"{RESPONSES}/{third.id}")
    assert deleted.json() == {"id": third.id, "object": "response.deleted", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        await api.responses.retrieve(third.id)
    with pytest.raises(openai.BadRequestError) as chained:
        await api.responses.create(model="fake-large", input="more", previous_response_id=third.id)
    assert chained.value.code == "previous_response_not_found"
    assert (await client.delete(f"{RESPONSES}/{third.id}")).status_code == 404


async def test_stored_responses_are_per_tenant_and_store_false_keeps_nothing(app: App) -> None:
    client, _ = app
    alice = sdk(client, **{"x-slm-router-tenant": "alice"})
    bob = sdk(client, **{"x-slm-router-tenant": "bob"})
    kept = await alice.responses.create(model="fake-large", input="secret plans")
    assert (await alice.responses.retrieve(kept.id)).id == kept.id
    with pytest.raises(openai.NotFoundError):
        await bob.responses.retrieve(kept.id)
    with pytest.raises(openai.BadRequestError):
        await bob.responses.create(model="fake-large", input="what were they?", previous_response_id=kept.id)
    assert (await client.delete(f"{RESPONSES}/{kept.id}", headers={"x-slm-router-tenant": "bob"})).status_code == 404
    assert (await alice.responses.retrieve(kept.id)).id == kept.id
    unkept = await alice.responses.create(model="fake-large", input="forget this", store=False)
    assert unkept.store is False
    with pytest.raises(openai.NotFoundError):
        await alice.responses.retrieve(unkept.id)


async def test_stream_events_build_the_same_response_and_store_it(app: App) -> None:
    client, services = app
    api = sdk(client)
    plain = await api.responses.create(model="fake-large", input="count the words here")
    kinds: list[str] = []
    sequence: list[int] = []
    async with api.responses.stream(model="fake-large", input="count the words here") as stream:
        async for event in stream:
            kinds.append(event.type)
            sequence.append(event.sequence_number)
        final = await stream.get_final_response()
    assert final.output_text == plain.output_text == "large says: count the words here"
    assert final.usage is not None and plain.usage is not None
    assert final.usage.output_tokens == plain.usage.output_tokens
    assert sequence == list(range(len(kinds)))
    deltas = kinds.count("response.output_text.delta")
    assert deltas == 6  # one per upstream chunk
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    # The stream's response is stored before response.completed is sent.
    stored = await api.responses.retrieve(final.id)
    assert stored.output_text == final.output_text and stored.status == "completed"
    assert await ledger_requests(services) == {"large": 2}


async def test_a_tool_loop_with_and_without_stored_state(app: App, upstream_behaviour: UpstreamBehaviour) -> None:
    client, _ = app
    api = sdk(client)
    # The default tier (small) has no tool calling: the router moves the request up.
    raw = await api.responses.with_raw_response.create(model="router", input="Oslo", tools=[WEATHER])
    called = raw.parse()
    assert (raw.headers["x-slm-router-tier"], raw.headers["x-slm-router-reason"]) == ("large", "tools")
    assert upstream_behaviour.requests[-1]["tools"] == [
        {"type": "function", "function": {k: v for k, v in WEATHER.items() if k != "type"}}
    ]
    call = called.output[0]
    assert call.type == "function_call"
    assert (call.name, json.loads(call.arguments), call.status) == ("get_weather", {"city": "Oslo"}, "completed")
    result = {"type": "function_call_output", "call_id": call.call_id, "output": "18C"}

    chained = await api.responses.create(
        model="router",
        previous_response_id=called.id,
        input=[result],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert chained.output_text == "large says: tool results: 18C"
    # Stateless: the client sends the call back itself.
    echoed = {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments}
    stateless = await api.responses.create(
        model="router",
        input=[{"role": "user", "content": "Oslo"}, echoed, result],  # type: ignore[list-item]
        tools=[WEATHER],  # type: ignore[list-item]
        store=False,
    )
    assert stateless.output_text == chained.output_text
    sent = upstream_behaviour.requests[-1]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.call_id and sent[2]["tool_call_id"] == call.call_id

    # A streamed call arrives as function_call_arguments events, joined by the SDK.
    async with api.responses.stream(model="router", input="Oslo", tools=[WEATHER]) as stream:  # type: ignore[list-item]
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    assert final.output[0].type == "function_call"
    assert json.loads(final.output[0].arguments) == {"city": "Oslo"}


async def test_text_format_json_schema_reaches_the_upstream_and_parses(
    app: App, upstream_behaviour: UpstreamBehaviour
) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    client, _ = app
    api = sdk(client)
    response = await api.responses.create(
        model="fake-large",
        input="Where?",
        text={"format": {"type": "json_schema", "name": "place", "schema": schema, "strict": True}},
    )
    assert json.loads(response.output_text) == {"city": "large says: Where?"}
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "json_schema"
    assert upstream_behaviour.requests[-1]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "place", "schema": schema, "strict": True},
    }
    # JSON mode needs the word "json" in the input, as OpenAI requires.
    with pytest.raises(openai.BadRequestError) as no_json:
        await api.responses.create(model="fake-large", input="Where?", text={"format": {"type": "json_object"}})
    assert no_json.value.param == "input"


async def test_max_output_tokens_gives_an_incomplete_response(app: App) -> None:
    client, _ = app
    api = sdk(client)
    cut = await api.responses.create(model="fake-large", input="a long answer please", max_output_tokens=2)
    assert cut.status == "incomplete" and cut.output_text == "large says:"
    assert cut.incomplete_details is not None and cut.incomplete_details.reason == "max_output_tokens"
    async with api.responses.stream(model="fake-large", input="a long answer please", max_output_tokens=2) as stream:
        kinds = [event.type async for event in stream]
    assert kinds[-1] == "response.incomplete"
    # Over the gateway's cap: the error names the Responses field, not the chat one.
    with pytest.raises(openai.BadRequestError) as over:
        await api.responses.create(model="fake-large", input="x", max_output_tokens=10**6)
    assert over.value.param == "max_output_tokens" and "max_output_tokens" in over.value.message


BAD_BODIES: list[tuple[dict[str, Any], str, str | None]] = [
    ({"input": "x", "tools": [{"type": "web_search"}]}, "tools", "invalid_value"),
    (
        {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x"}]}]},
        "input[0].content",
        "invalid_value",
    ),
    ({"input": [{"type": "reasoning", "summary": []}]}, "input", "invalid_value"),
    ({"input": [{"type": "function_call_output", "call_id": "c1", "output": "18C"}]}, "input[0].call_id", None),
    (
        {
            "input": [
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"role": "user", "content": "x"},
            ]
        },
        "input[1]",
        None,
    ),
    # fake-large takes no reasoning_effort (its tier lists no model_params).
    ({"input": "x", "reasoning": {"effort": "high"}}, "reasoning.effort", "unsupported_parameter"),
    ({"input": "x", "text": {"verbosity": "low"}}, "text.verbosity", "unsupported_parameter"),
    ({"input": "x", "reasoning": {"effort": "low", "summary": "auto"}}, "reasoning.summary", "unsupported_parameter"),
    ({"input": "x", "reasoning": {"mode": "pro"}}, "reasoning.mode", "unsupported_parameter"),
    ({"input": "x", "reasoning": {"effort": "LOW!"}}, "reasoning.effort", "invalid_value"),
    ({"input": "x", "background": True, "store": False}, "store", None),
    (
        {"input": "x", "background": True, "previous_response_id": "resp_nothing"},
        "previous_response_id",
        "previous_response_not_found",
    ),
    ({"input": "x", "truncation": "auto"}, "truncation", "unsupported_parameter"),
    ({"input": "x", "moderation": {"model": "omni-moderation-latest"}}, "moderation", "unsupported_parameter"),
    ({"input": "x", "context_management": [{"type": "compaction"}]}, "context_management", "unsupported_parameter"),
    ({"input": "x", "background_options": {"completion_window": "2h"}}, "background_options", "unsupported_parameter"),
    ({"input": "x", "include": ["message.output_text.logprobz"]}, "include", "invalid_value"),
    ({"input": "x", "top_logprobs": 21}, "top_logprobs", "invalid_value"),
    ({"input": "x", "tool_choice": {"type": "function", "name": "nope"}, "tools": [WEATHER]}, "tool_choice", None),
    (
        {"input": "x", "text": {"format": {"type": "json_schema", "name": "a", "schema": {"type": 3}}}},
        "text.format",
        "invalid_value",
    ),
    (
        {"input": "x", "text": {"format": {"type": "json_schema", "name": "a", "shema": {}}}},
        "text.format.shema",
        "invalid_value",
    ),
    ({"input": []}, "input", "invalid_value"),
    ({"input": "x", "previous_response_id": "resp_nothing"}, "previous_response_id", "previous_response_not_found"),
]


@pytest.mark.parametrize(("body", "param", "code"), BAD_BODIES)
async def test_bad_requests_are_400_naming_the_field(
    app: App,
    upstream_behaviour: UpstreamBehaviour,
    body: dict[str, Any],
    param: str,
    code: str | None,
) -> None:
    client, _ = app
    sent = len(upstream_behaviour.requests)
    answer = await client.post(RESPONSES, json={"model": "fake-large", **body})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")
    assert len(upstream_behaviour.requests) == sent


async def test_a_failure_mid_stream_ends_with_error_and_failed_and_is_accounted(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> None:
    small = ScriptedEngine(pieces=["a", "b", "c"], model="small-model", fail_after=1)
    config = gateway_config(redis_server.url, fake_upstream.base_url)
    async with make_app(config, small=small) as (client, services):
        async with client.stream(
            "POST", RESPONSES, json={"model": "small-model", "input": "x", "stream": True}
        ) as answer:
            frames = [line async for line in answer.aiter_lines() if line.startswith("data: ")]
        events = [json.loads(frame.removeprefix("data: ")) for frame in frames]
        assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
        assert events[-2]["code"] == "upstream_error"
        failed = events[-1]["response"]
        assert failed["status"] == "failed" and failed["error"]["code"] == "upstream_error"
        assert failed["output"][0]["content"][0]["text"] == "a"
        assert await ledger_requests(services) == {"small": 1}
        # A failed response is not kept.
        assert (await client.get(f"{RESPONSES}/{failed['id']}")).status_code == 404


async def test_a_client_leaving_a_stream_cancels_generation_and_is_accounted(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> None:
    small = ScriptedEngine(pieces=["a"] * 50, model="small-model", delay_s=0.01)
    config = gateway_config(redis_server.url, fake_upstream.base_url)
    async with make_app(config, small=small) as (client, services):
        body = {"model": "small-model", "input": "x", "stream": True}
        async with client.stream("POST", RESPONSES, json=body) as answer:
            async for line in answer.aiter_lines():
                if "response.output_text.delta" in line:
                    break
        await services.observer.drain()
        assert small.closed == 1
        assert await ledger_requests(services) == {"small": 1}


async def test_without_redis_responses_are_answered_but_not_kept(
    make_app: AppFactory, fake_upstream: FakeOpenAIUpstream
) -> None:
    config = gateway_config("redis://127.0.0.1:1", fake_upstream.base_url)
    async with make_app(config) as (client, _):
        api = sdk(client)
        response = await api.responses.create(model="fake-large", input="hello")
        assert response.output_text == "large says: hello" and response.store is False
        with pytest.raises(openai.InternalServerError) as unavailable:
            await api.responses.create(model="fake-large", input="again", previous_response_id=response.id)
        assert unavailable.value.status_code == 503 and unavailable.value.code == "state_unavailable"


async def test_logprobs_come_with_the_output_text_stream_and_not(
    app: App, upstream_behaviour: UpstreamBehaviour
) -> None:
    client, _ = app
    api = sdk(client)
    args: dict[str, Any] = {"model": "fake-large", "input": "two words", "top_logprobs": 2}
    response = await api.responses.create(**args, include=["message.output_text.logprobs"])
    assert (upstream_behaviour.requests[-1]["logprobs"], upstream_behaviour.requests[-1]["top_logprobs"]) == (True, 2)
    part = response.output[0].content[0]  # type: ignore[union-attr]
    tokens = part.logprobs or []  # type: ignore[union-attr]
    # The fake upstream's words, logprob -(i+1)/10 each.
    expected = [("large", -0.1), (" says:", -0.2), (" two", -0.3), (" words", -0.4)]
    assert [(t.token, t.logprob) for t in tokens] == expected
    assert [a.token for a in tokens[0].top_logprobs] == ["large", "alt1"]
    async with api.responses.stream(**args) as stream:  # top_logprobs alone asks for them too
        deltas = [e.logprobs for e in [event async for event in stream] if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert [t.token for delta in deltas for t in delta] == [t.token for t in tokens]
    streamed = final.output[0].content[0].logprobs or []  # type: ignore[union-attr]
    assert [(t.token, t.logprob) for t in streamed] == [(t.token, t.logprob) for t in tokens]
    # Without either, none are asked for.
    await api.responses.create(model="fake-large", input="two words")
    assert "logprobs" not in upstream_behaviour.requests[-1]


async def test_input_items_list_what_the_request_sent(app: App) -> None:
    client, _ = app
    api = sdk(client)
    first = await api.responses.create(model="fake-large", input="Oslo", tools=[WEATHER])  # type: ignore[list-item]
    call = first.output[0]
    assert call.type == "function_call"
    items: list[Any] = [
        {"type": "function_call_output", "call_id": call.call_id, "output": "18C"},
        {
            "role": "user",
            "content": [{"type": "input_text", "text": "and "}, {"type": "input_text", "text": "Bergen?"}],
        },
    ]
    second = await api.responses.create(
        model="fake-large",
        input=items,
        previous_response_id=first.id,
        tools=[WEATHER],  # type: ignore[list-item]
    )
    # The SDK's cursor page, newest first by default; only this request's items, not the first's.
    listed = [item async for item in api.responses.input_items.list(second.id)]
    assert [item.type for item in listed] == ["message", "function_call_output"]
    assert listed[0].content[0].text == "and Bergen?"  # type: ignore[union-attr]
    assert (listed[1].call_id, listed[1].output) == (call.call_id, "18C")  # type: ignore[union-attr]
    first_items = [item async for item in api.responses.input_items.list(first.id, order="asc")]
    assert [(i.type, i.role, i.content[0].text) for i in first_items] == [("message", "user", "Oslo")]  # type: ignore[union-attr]
    # Pages: one item at a time, oldest first, following the cursor.
    page = (await client.get(f"{RESPONSES}/{second.id}/input_items", params={"limit": 1, "order": "asc"})).json()
    assert (page["object"], len(page["data"]), page["has_more"]) == ("list", 1, True)
    assert page["first_id"] == page["last_id"] == page["data"][0]["id"]
    rest = await client.get(
        f"{RESPONSES}/{second.id}/input_items", params={"limit": 1, "order": "asc", "after": page["last_id"]}
    )
    assert rest.json()["has_more"] is False and rest.json()["data"][0]["type"] == "message"
    for params, param in (({"limit": 0}, "limit"), ({"limit": "x"}, "limit"), ({"order": "up"}, "order")):
        bad = await client.get(f"{RESPONSES}/{second.id}/input_items", params=params)
        assert (bad.status_code, bad.json()["error"]["param"]) == (400, param)
    missing = await client.get(f"{RESPONSES}/resp_none/input_items")
    other = await client.get(f"{RESPONSES}/{second.id}/input_items", headers={"x-slm-router-tenant": "bob"})
    assert missing.status_code == other.status_code == 404


async def test_a_store_that_breaks_still_answers_in_full(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    client, services = app
    assert services.store is not None

    async def broken(*_: Any) -> bool:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(services.store.responses, "put", broken)
    response = await sdk(client).responses.create(model="fake-large", input="still here?")
    assert (response.output_text, response.store) == ("large says: still here?", False)
    assert await ledger_requests(services) == {"large": 1}
