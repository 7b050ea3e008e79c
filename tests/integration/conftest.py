"""In-process gateway apps (no Ray) over real local servers: Redis and an OpenAI upstream."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
import pytest

from deployments.hosted_engine import build_hosted_engine
from gateway.accounting.ledger import SeriesCounts
from gateway.config import GatewayConfig, LiteLLMTierConfig
from gateway.engine import ChatEngine
from gateway.http import GatewayServices, create_http_app
from gateway.http.open_requests import OpenRequests
from gateway.protocol.model_params import VLLM_PARAMS
from gateway.redis_server import EmbeddedRedis
from gateway.serving import Tier
from gateway.serving.assembly import ReplicaServices, build_replica_services
from tests.fakes.engines import ScriptedEngine
from tests.fakes.openai_upstream import FakeOpenAIUpstream, hosted_tier_settings

ADMIN_KEY = "admin-test-credential-0123456789"
#: Redis timeouts for tests against a live server. The production defaults (0.5 s) fail fast
#: on a dead Redis; on a loaded 2-core CI box a burst of fresh connections to a live one can
#: take longer, and the timeout turns into a degraded (fail-open) decision the test did not
#: ask for. Tests about a dead or black-holed Redis stop the server, use a refused port, or
#: set their own timeouts.
LIVE_REDIS_TIMEOUTS: dict[str, float] = {"op_timeout_s": 5.0, "connect_timeout_s": 5.0}


def gateway_config(redis_url: str | None, upstream_url: str, **sections: Any) -> GatewayConfig:
    """A two-tier config: a scripted small tier and a litellm large tier at the fake upstream."""
    data: dict[str, Any] = {
        "redis": {"url": redis_url},
        "routing": {"router_artifact": None},
        "tiers": {
            "small": {"kind": "vllm", "served_model_name": "small-model", "default_max_tokens": 16},
            "large": hosted_tier_settings(upstream_url),
        },
        "accounting": {
            # A ledger of its own per config, so tests that count never see each other's requests.
            "ledger": {"key_prefix": f"it-{uuid.uuid4().hex[:12]}:acct"},
            "prices": {
                "small": {"kind": "per_million", "input_usd_per_million": 0.1, "output_usd_per_million": 0.3},
                "large": {"kind": "per_million", "input_usd_per_million": 2.5, "output_usd_per_million": 10},
            },
        },
        "state": {"prefix": "it", "auth": {"enabled": False}, **LIVE_REDIS_TIMEOUTS},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return GatewayConfig.model_validate(data)


async def make_tiers(
    config: GatewayConfig,
    small: ScriptedEngine | None = None,
    *,
    scripted_large: bool = False,
    small_forced_tool_calls: bool = False,
) -> list[Tier]:
    large_config = config.tiers["large"]
    assert isinstance(large_config, LiteLLMTierConfig)
    large: Any = (
        ScriptedEngine(model="fake-large", prompt_tokens=11) if scripted_large else build_hosted_engine(large_config)
    )
    await large.start()
    return [
        Tier(
            "small",
            "small-model",
            small or ScriptedEngine(model="small-model"),
            16,
            5,
            forced_tool_calls=small_forced_tool_calls,
            completes_text=True,  # it stands for the vLLM tier
            constrains_decoding=True,
            model_params=VLLM_PARAMS,
        ),
        Tier(
            "large",
            "fake-large",
            large,
            64,
            5,
            supports_tools=large_config.tool_calling,
            billed_when_abandoned=True,
            model_params=frozenset(large_config.model_params),
            constrains_decoding=large_config.vllm_decoding,
        ),
    ]


AppFactory = Callable[..., Any]


async def flushed_totals(services: ReplicaServices) -> list[SeriesCounts]:
    """The ledger's series after this replica's buffered increments reached Redis."""
    assert services.store is not None and services.ledger is not None
    assert await services.store.ledger.flush()
    return await services.ledger.totals()


def sdk(client: httpx.AsyncClient, **headers: str) -> openai.AsyncOpenAI:
    """The official openai SDK over an in-process app's client, with extra default headers."""
    return openai.AsyncOpenAI(
        base_url="http://gateway/v1", api_key="unused", http_client=client, max_retries=0, default_headers=headers
    )


@pytest.fixture()
def make_app(fake_upstream: FakeOpenAIUpstream) -> AppFactory:
    """``async with make_app(config, ...) as (client, services)``: one in-process replica."""

    @asynccontextmanager
    async def factory(
        config: GatewayConfig,
        *,
        small: ScriptedEngine | None = None,
        scripted_large: bool = False,
        small_forced_tool_calls: bool = False,
        environ: Mapping[str, str] | None = None,
        open_requests: OpenRequests | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[tuple[httpx.AsyncClient, ReplicaServices]]:
        tiers = await make_tiers(
            config, small, scripted_large=scripted_large, small_forced_tool_calls=small_forced_tool_calls
        )
        env = {"SLM_ROUTER_ADMIN_KEY": ADMIN_KEY, **(environ or {})}
        services = await build_replica_services(config, tiers, environ=env, **kwargs)
        app = create_http_app(
            GatewayServices.of(services, open_requests=open_requests),
            max_body_bytes=config.server.max_body_bytes,
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30) as client:
            try:
                yield client, services
            finally:
                await services.close()

    return factory


Call = Callable[..., Awaitable[httpx.Response]]


@asynccontextmanager
async def cached_chat(
    make_app: AppFactory, redis_url: str, upstream_url: str, body: Mapping[str, Any]
) -> AsyncIterator[Call]:
    """``ask(**changes)``: post ``body`` with ``changes`` and the response cache on, to a replica
    with a cache of its own (a fresh key prefix)."""
    config = gateway_config(redis_url, upstream_url, state={"prefix": f"c{uuid.uuid4().hex[:8]}"})
    async with make_app(config) as (client, _):

        async def ask(**changes: object) -> httpx.Response:
            return await client.post(
                "/v1/chat/completions", json={**body, **changes}, headers={"x-slm-router-cache": "true"}
            )

        yield ask


def hosted_engine(upstream_url: str, transport: str, **overrides: Any) -> ChatEngine:
    """A hosted tier's engine (``transport`` ``litellm`` or ``openai``) at a local upstream."""
    settings = hosted_tier_settings(upstream_url, transport=transport, **overrides)
    return build_hosted_engine(LiteLLMTierConfig.model_validate(settings))


@pytest.fixture()
def background_config(redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream) -> GatewayConfig:
    """A config for background responses: a fresh key prefix, and polls and leases short enough
    for a test to see a cancel or a lapsed lease within a second."""
    responses = {"background_poll_s": 0.1, "background_lease_s": 0.5}
    return gateway_config(
        redis_server.url,
        fake_upstream.base_url,
        state={"prefix": f"bg{uuid.uuid4().hex[:6]}", "responses": responses},
    )
