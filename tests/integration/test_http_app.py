"""The HTTP app in-process (no Ray) over real local servers: Redis and an OpenAI upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from deployments.litellm_engine import LiteLLMChatEngine
from gateway.config import LiteLLMTierConfig
from gateway.http import create_http_app
from gateway.redis_server import EmbeddedRedis
from gateway.serving import ChatCompletionService, HealthService, Tier
from tests.fakes.engines import ScriptedEngine
from tests.fakes.openai_upstream import FakeOpenAIUpstream


@pytest.fixture()
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis", persist=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture()
async def client(fake_upstream: FakeOpenAIUpstream, own_redis: EmbeddedRedis) -> AsyncIterator[httpx.AsyncClient]:
    import redis.asyncio as aioredis

    large = LiteLLMChatEngine(
        LiteLLMTierConfig(
            served_model_name="fake-large",
            model="openai/fake-large",
            api_base=fake_upstream.base_url,
            api_key_env="SLM_TEST_UPSTREAM_KEY",
            timeout_s=3,
            num_retries=0,
        )
    )
    await large.start()
    chat = ChatCompletionService(
        [
            Tier("small", "small-model", ScriptedEngine(model="small-model"), 16, 5),
            Tier("large", "fake-large", large, 64, 5),
        ],
        virtual_model_name="router",
        default_tier="small",
        max_tokens_limit=1000,
    )
    redis_client = aioredis.Redis.from_url(own_redis.url, socket_timeout=1, socket_connect_timeout=1)

    async def ping() -> None:
        await redis_client.ping()

    app = create_http_app(chat, HealthService({"redis": ping}, timeout_s=2), max_body_bytes=4096)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http
    await redis_client.aclose()


async def test_round_trip_through_both_tiers(client: httpx.AsyncClient) -> None:
    small = await client.post(
        "/v1/chat/completions", json={"model": "router", "messages": [{"role": "user", "content": "q"}]}
    )
    assert small.status_code == 200 and small.headers["x-slm-router-tier"] == "small"
    large = await client.post(
        "/v1/chat/completions", json={"model": "fake-large", "messages": [{"role": "user", "content": "q"}]}
    )
    assert large.json()["choices"][0]["message"]["content"] == "large says: q"


async def test_chunked_body_over_limit_is_413(client: httpx.AsyncClient) -> None:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 1000

    response = await client.post("/v1/chat/completions", content=body())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


async def test_stream_over_http(client: httpx.AsyncClient) -> None:
    body = {"model": "fake-large", "stream": True, "messages": [{"role": "user", "content": "one two"}]}
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in response.aiter_lines() if line]
    assert lines[-1] == "data: [DONE]"


async def test_readiness_follows_redis(client: httpx.AsyncClient, own_redis: EmbeddedRedis) -> None:
    ready = await client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["checks"]["redis"] == "ok"
    own_redis.stop()
    not_ready = await client.get("/health/ready")
    assert not_ready.status_code == 503
    assert not_ready.json()["status"] == "not_ready"
    assert (await client.get("/health/live")).status_code == 200


async def test_get_single_model(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/models/router")).json()["id"] == "router"
    missing = await client.get("/v1/models/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize("value", ["abc", "1.5", "-0.1", "nan"])
async def test_bad_threshold_header_is_400(client: httpx.AsyncClient, value: str) -> None:
    response = await client.post(
        "/v1/chat/completions",
        json={"model": "router", "messages": [{"role": "user", "content": "q"}]},
        headers={"x-slm-router-threshold": value},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "x-slm-router-threshold"
