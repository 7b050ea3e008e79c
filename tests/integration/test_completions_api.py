"""``/v1/completions`` through the HTTP app with the official openai SDK: the chat pipeline's
routing, headers, cache and ledger, answered as ``text_completion`` objects."""

from __future__ import annotations

import uuid
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

App = tuple[httpx.AsyncClient, ReplicaServices, ScriptedEngine]
COMPLETIONS = "/v1/completions"


@pytest.fixture()
async def app(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> AsyncIterator[App]:
    config = gateway_config(redis_server.url, fake_upstream.base_url, state={"prefix": f"cmp{uuid.uuid4().hex[:6]}"})
    small = ScriptedEngine(["Hello", ",", " world"], model="small-model", prompt_tokens=4)
    async with make_app(config, small=small) as (client, services):
        yield client, services, small


async def test_the_sdk_completes_a_prompt_on_the_small_model(app: App) -> None:
    client, services, small = app
    api = sdk(client)
    raw = await api.completions.with_raw_response.create(model="small-model", prompt="Once upon a time", max_tokens=8)
    completion = raw.parse()
    assert completion.object == "text_completion" and completion.id.startswith("cmpl-")
    assert completion.model == "small-model"
    assert completion.choices[0].text == "Hello, world" and completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
        4,
        3,
    )
    assert raw.headers["x-slm-router-tier"] == "small" and "x-slm-router-cost-usd" in raw.headers
    sent = small.requests[-1]
    assert sent.raw_prompt and sent.messages[-1]["content"] == "Once upon a time" and sent.max_tokens == 8
    # OpenAI's default cap for a completion is 16 tokens.
    await api.completions.create(model="router", prompt="x")
    assert small.requests[-1].max_tokens == 16
    totals = await flushed_totals(services)
    assert sum(s.counts.requests for s in totals) == 2
    assert sum(s.counts.completion_tokens for s in totals) == 3 + 3


async def test_a_stream_with_usage_and_logprobs(app: App) -> None:
    client, _, _ = app
    api = sdk(client)
    stream = await api.completions.create(
        model="small-model",
        prompt="Once upon a time",
        stream=True,
        logprobs=1,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    texts = [choice.text for chunk in chunks for choice in chunk.choices]
    assert "".join(texts) == "Hello, world"
    assert all(chunk.object == "text_completion" for chunk in chunks)
    tokens = [t for chunk in chunks for c in chunk.choices if c.logprobs for t in c.logprobs.tokens or []]
    offsets = [o for chunk in chunks for c in chunk.choices if c.logprobs for o in c.logprobs.text_offset or []]
    assert tokens == ["Hello", ",", " world"] and offsets == [0, 5, 6]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


async def test_a_chat_only_model_and_unsupported_fields_are_400s(
    app: App, upstream_behaviour: UpstreamBehaviour
) -> None:
    client, _, small = app
    sent = len(upstream_behaviour.requests)
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"model": "fake-large"}, "model", "model_not_supported"),
        ({"echo": True}, "echo", "unsupported_parameter"),
        ({"suffix": "}"}, "suffix", "unsupported_parameter"),
        ({"prompt": ["a", "b"]}, "prompt", "invalid_value"),
        ({"max_tokens": 10**6}, "max_tokens", "invalid_value"),
    ]
    for fields, param, code in cases:
        body = {"model": "small-model", "prompt": "x", **fields}
        answer = await client.post(COMPLETIONS, json=body)
        assert answer.status_code == 400, (fields, answer.text)
        error = answer.json()["error"]
        assert (error["param"], error["code"]) == (param, code), error
    assert not small.requests and len(upstream_behaviour.requests) == sent
    with pytest.raises(openai.BadRequestError):
        await sdk(client).completions.create(model="fake-large", prompt="x")


async def test_the_cache_keeps_completions_apart_from_chat(app: App) -> None:
    client, _, small = app
    cache = {"x-slm-router-cache": "true"}
    body = {"model": "small-model", "prompt": "Say hi", "max_tokens": 4, "temperature": 0}
    first = await client.post(COMPLETIONS, json=body, headers=cache)
    again = await client.post(COMPLETIONS, json=body, headers=cache)
    assert (first.headers["x-slm-router-cache"], again.headers["x-slm-router-cache"]) == ("miss", "hit")
    assert again.json()["object"] == "text_completion" and again.json()["choices"][0]["text"] == "Hello, world"
    # The same text as a chat message is another request: the chat template changes the answer.
    chat = {
        "model": "small-model",
        "messages": [{"role": "user", "content": "Say hi"}],
        "max_tokens": 4,
        "temperature": 0,
    }
    answered = await client.post("/v1/chat/completions", json=chat, headers=cache)
    assert answered.headers["x-slm-router-cache"] == "miss" and answered.json()["object"] == "chat.completion"
    assert [r.raw_prompt for r in small.requests] == [True, False]


async def test_telemetry_names_the_operation_text_completion(
    make_app: AppFactory, fake_upstream: FakeOpenAIUpstream
) -> None:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    config = gateway_config(None, fake_upstream.base_url)
    async with make_app(config, span_processors=[SimpleSpanProcessor(spans)], metric_readers=[reader]) as (client, _):
        completed = await client.post(COMPLETIONS, json={"model": "small-model", "prompt": "Once"})
        refused = await client.post(COMPLETIONS, json={"model": "small-model", "prompt": "Once", "echo": True})
        chatted = await client.post(
            "/v1/chat/completions", json={"model": "small-model", "messages": [{"role": "user", "content": "x"}]}
        )
    assert (completed.status_code, refused.status_code, chatted.status_code) == (200, 400, 200)
    client_spans = [s for s in spans.get_finished_spans() if s.kind.name == "CLIENT"]
    assert sorted(s.name for s in client_spans) == ["chat small-model", "text_completion small-model"]
    data = reader.get_metrics_data()
    assert data is not None
    operations: dict[str, int] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "slm_router.requests":
                    for point in metric.data.data_points:
                        name = str((point.attributes or {}).get("gen_ai.operation.name"))
                        operations[name] = operations.get(name, 0) + int(point.value)
    # The refused completion counts too, as a text completion.
    assert operations == {"text_completion": 2, "chat": 1}
