"""The HTTP app in-process (no Ray) over real local servers: Redis and an OpenAI upstream."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.redis_server import EmbeddedRedis
from tests.fakes.openai_upstream import FakeOpenAIUpstream, UpstreamBehaviour
from tests.integration.conftest import AppFactory, gateway_config

CHAT = "/v1/chat/completions"


def body(model: str = "router", content: str = "q", **extra: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


async def test_round_trip_through_both_tiers_with_cost(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> None:
    config = gateway_config(redis_server.url, fake_upstream.base_url, state={"prefix": f"t{uuid.uuid4().hex[:8]}"})
    async with make_app(config) as (client, _):
        small = await client.post(CHAT, json=body())
        assert small.status_code == 200 and small.headers["x-slm-router-tier"] == "small"
        assert small.json()["usage"]["slm_router"]["cost_usd"] == float(small.headers["x-slm-router-cost-usd"])
        large = await client.post(CHAT, json=body("fake-large"))
        assert large.json()["choices"][0]["message"]["content"] == "large says: q"
        assert large.headers["x-slm-router-savings-usd"] == "0.000000000"  # the baseline itself


@pytest.mark.parametrize("stream", [False, True])
async def test_cached_prompt_tokens_are_charged_at_the_cache_price(
    make_app: AppFactory,
    redis_server: EmbeddedRedis,
    fake_upstream: FakeOpenAIUpstream,
    upstream_behaviour: UpstreamBehaviour,
    stream: bool,
) -> None:
    # The provider served 2 of the prompt tokens from its cache and says so in the usage.
    upstream_behaviour.cached_tokens = 2
    prices = {
        "small": {"kind": "per_million", "input_usd_per_million": 0.1, "output_usd_per_million": 0.3},
        "large": {
            "kind": "per_million",
            "input_usd_per_million": 2.5,
            "output_usd_per_million": 10,
            "cached_input_usd_per_million": 1.25,
        },
    }
    config = gateway_config(
        redis_server.url,
        fake_upstream.base_url,
        state={"prefix": f"t{uuid.uuid4().hex[:8]}"},
        accounting={"prices": prices, "ledger": {"key_prefix": f"c{uuid.uuid4().hex[:8]}:acct"}},
    )
    async with make_app(config) as (client, _):
        extra = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
        answer = await client.post(CHAT, json=body("fake-large", content="a b c", **extra))
        assert answer.status_code == 200
        if stream:
            frames = [line for line in answer.text.splitlines() if line.startswith("data: {")]
            usage = json.loads(frames[-1].removeprefix("data: "))["usage"]
        else:
            usage = answer.json()["usage"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 2}
    prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
    expected = (prompt - 2) * 2.5e-6 + 2 * 1.25e-6 + completion * 1e-5
    assert usage["slm_router"]["cost_usd"] == pytest.approx(expected, abs=1e-9)
    assert usage["slm_router"]["cost_usd"] < (prompt * 2.5e-6 + completion * 1e-5)


async def test_chunked_body_over_limit_is_413(make_app: AppFactory, fake_upstream: FakeOpenAIUpstream) -> None:
    config = gateway_config(None, fake_upstream.base_url, server={"max_body_bytes": 4096})

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 1000

    async with make_app(config) as (client, _):
        response = await client.post(CHAT, content=chunks())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


async def test_stream_over_http_with_cost_in_usage(make_app: AppFactory, fake_upstream: FakeOpenAIUpstream) -> None:
    async with make_app(gateway_config(None, fake_upstream.base_url)) as (client, _):
        request = body("fake-large", "one two", stream=True, stream_options={"include_usage": True})
        async with client.stream("POST", CHAT, json=request) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = [line async for line in response.aiter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert '"slm_router"' in lines[-2] and '"cost_usd"' in lines[-2]


async def test_readiness_degrades_but_stays_ready_without_redis(
    make_app: AppFactory, fake_upstream: FakeOpenAIUpstream, tmp_path: Path
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", persist=False)
    server.start()
    async with make_app(gateway_config(server.url, fake_upstream.base_url)) as (client, _):
        ready = await client.get("/health/ready")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        assert ready.json()["checks"]["redis"] == "ok"
        server.stop()
        degraded = await client.get("/health/ready")
        assert degraded.status_code == 200
        assert degraded.json()["status"] == "degraded"
        assert degraded.json()["checks"]["redis"] != "ok"
        assert degraded.json()["state"]["degraded"] is True
        # Serving goes on without Redis.
        assert (await client.post(CHAT, json=body())).status_code == 200
        assert (await client.get("/health/live")).status_code == 200


async def test_get_single_model(make_app: AppFactory, fake_upstream: FakeOpenAIUpstream) -> None:
    async with make_app(gateway_config(None, fake_upstream.base_url)) as (client, _):
        assert (await client.get("/v1/models/router")).json()["id"] == "router"
        missing = await client.get("/v1/models/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize("value", ["abc", "1.5", "-0.1", "nan"])
async def test_bad_threshold_header_is_400(make_app: AppFactory, fake_upstream: FakeOpenAIUpstream, value: str) -> None:
    async with make_app(gateway_config(None, fake_upstream.base_url)) as (client, _):
        response = await client.post(CHAT, json=body(), headers={"x-slm-router-threshold": value})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "x-slm-router-threshold"


async def test_trace_context_flows_to_the_upstream(
    make_app: AppFactory, fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour
) -> None:
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{'1' * 16}-01"
    async with make_app(gateway_config(None, fake_upstream.base_url)) as (client, _):
        response = await client.post(CHAT, json=body("fake-large"), headers={"traceparent": traceparent})
    assert response.status_code == 200
    sent = upstream_behaviour.headers_seen[-1]["traceparent"]
    assert sent.split("-")[1] == trace_id and sent != traceparent  # same trace, the gateway's own span


async def test_request_span_has_routing_and_upstream_children(
    make_app: AppFactory, fake_upstream: FakeOpenAIUpstream
) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    config = gateway_config(None, fake_upstream.base_url)
    async with make_app(config, span_processors=[SimpleSpanProcessor(exporter)]) as (client, _):
        response = await client.post(CHAT, json=body("fake-large"))
    assert response.status_code == 200
    spans = exporter.get_finished_spans()
    server = [s for s in spans if s.kind.name == "SERVER"]
    assert len(server) == 1
    children = [s for s in spans if s.parent is not None and s.parent.span_id == server[0].context.span_id]
    kinds = sorted(s.kind.name for s in children)
    assert kinds == ["CLIENT", "INTERNAL"]
    assert all(s.context.trace_id == server[0].context.trace_id for s in children)
    client_span = next(s for s in children if s.kind.name == "CLIENT")
    assert client_span.attributes is not None and client_span.attributes["gen_ai.usage.output_tokens"] == 3
    assert server[0].attributes is not None and server[0].attributes["gen_ai.output.type"] == "text"


async def test_request_span_says_when_json_was_asked_for(
    make_app: AppFactory, fake_upstream: FakeOpenAIUpstream
) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    json_schema = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
    async with make_app(
        gateway_config(None, fake_upstream.base_url), span_processors=[SimpleSpanProcessor(exporter)]
    ) as (
        client,
        _,
    ):
        answered = await client.post(CHAT, json=body("fake-large", response_format=json_schema))
        refused = await client.post(CHAT, json=body("fake-large", response_format={"type": "json_object"}))
    assert (answered.status_code, refused.status_code) == (200, 400)  # the second lacks the word "json"
    server = [s for s in exporter.get_finished_spans() if s.kind.name == "SERVER"]
    assert [(s.attributes or {}).get("gen_ai.output.type") for s in server] == ["json", "json"]
