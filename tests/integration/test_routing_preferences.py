"""Per-tenant and per-key routing preferences: a threshold, or a large-model share that each
router artifact turns into its own threshold (so it survives an artifact swap)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import httpx
import pytest
from pydantic import ValidationError

from gateway.redis_server import EmbeddedRedis
from gateway.routing import ThresholdPolicy
from gateway.serving.assembly import ReplicaServices
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.integration.conftest import ADMIN_KEY, AppFactory, gateway_config
from tests.unit.test_routing_policy import LengthScorer

CHAT = "/v1/chat/completions"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


class HalfScaleRouter(LengthScorer):
    """Another artifact: scores half as high, and calibrated to match."""

    name = "half@test"

    async def score(self, messages: Sequence[dict[str, str]]) -> float:
        return await super().score(messages) / 2

    def threshold_for_share(self, large_share: float) -> float | None:
        return (1.0 - large_share) / 2


class UncalibratedRouter(LengthScorer):
    """An artifact without a calibration table."""

    name = "bare@test"

    def threshold_for_share(self, large_share: float) -> float | None:
        return None


def use(services: ReplicaServices, scorer: LengthScorer) -> None:
    services.chat.set_policy(ThresholdPolicy(["small", "large"], scorer, [0.5], "small"))


async def ask(client: httpx.AsyncClient, length: int, **headers: str) -> httpx.Response:
    body = {"model": "router", "messages": [{"role": "user", "content": "x" * length}], "max_tokens": 2}
    response = await client.post(CHAT, json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response


def routed(response: httpx.Response) -> tuple[str, str]:
    return response.headers["x-slm-router-tier"], response.headers["x-slm-router-threshold"]


async def test_a_tenants_share_follows_the_loaded_router(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> None:
    cfg = gateway_config(
        redis_server.url,
        fake_upstream.base_url,
        state={"prefix": f"rp{uuid.uuid4().hex[:6]}"},
        routing={"router_artifact": None, "tenant_large_shares": {"premium": 0.8}, "tenant_thresholds": {"fixed": 0.2}},
    )
    async with make_app(cfg, scripted_large=True) as (client, services):
        use(services, LengthScorer())
        premium, fixed = {"x-slm-router-tenant": "premium"}, {"x-slm-router-tenant": "fixed"}
        # Score 0.30: the share's threshold here is 0.2, as is the fixed one; others use 0.5.
        assert routed(await ask(client, 30, **premium)) == ("large", "0.200000")
        assert routed(await ask(client, 30, **fixed)) == ("large", "0.200000")
        assert routed(await ask(client, 30)) == ("small", "0.500000")

        # Another artifact: the same prompt scores 0.15. The share becomes this router's own
        # threshold (0.1) and still sends it to the large model; the fixed number does not.
        use(services, HalfScaleRouter())
        assert routed(await ask(client, 30, **premium)) == ("large", "0.100000")
        assert routed(await ask(client, 30, **fixed)) == ("small", "0.200000")

        # An artifact without calibration cannot honour a share: the router's own threshold routes.
        use(services, UncalibratedRouter())
        assert routed(await ask(client, 30, **premium)) == ("small", "0.500000")
        # A request's own threshold still wins over the tenant's preference.
        use(services, LengthScorer())
        own = await ask(client, 30, **premium, **{"x-slm-router-threshold": "0.9"})
        assert routed(own) == ("small", "0.900000")


def test_a_tenant_has_a_threshold_or_a_share() -> None:
    with pytest.raises(ValidationError, match="both a threshold and a large share"):
        gateway_config(
            None, "http://upstream", routing={"tenant_thresholds": {"a": 0.3}, "tenant_large_shares": {"a": 0.5}}
        )


async def test_a_keys_share_wins_over_its_tenants_threshold(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> None:
    cfg = gateway_config(
        redis_server.url,
        fake_upstream.base_url,
        state={"prefix": f"rk{uuid.uuid4().hex[:6]}", "auth": {"enabled": True, "cache_ttl_s": 0}},
        routing={"router_artifact": None, "tenant_thresholds": {"thrifty": 0.99}},
    )
    async with make_app(cfg, scripted_large=True) as (client, services):
        use(services, LengthScorer())

        async def key(**routing_defaults: float) -> dict[str, str]:
            body = {"name": "k", "tenant": "thrifty", "routing_defaults": routing_defaults or None}
            created = await client.post("/admin/keys", json=body, headers=ADMIN)
            assert created.status_code == 201, created.text
            return {"authorization": f"Bearer {created.json()['key']}"}

        assert routed(await ask(client, 30, **await key(large_share=0.8))) == ("large", "0.200000")
        assert routed(await ask(client, 30, **await key(threshold=0.25))) == ("large", "0.250000")
        assert routed(await ask(client, 30, **await key())) == ("small", "0.990000")  # the tenant's
        for bad, param in (
            ({"threshold": 1.5}, "routing_defaults.threshold"),
            ({"large_share": -0.1}, "routing_defaults.large_share"),
            ({"threshold": 0.2, "large_share": 0.3}, "routing_defaults"),
            ({"tier": "small"}, "routing_defaults.tier"),
        ):
            refused = await client.post("/admin/keys", json={"name": "k", "routing_defaults": bad}, headers=ADMIN)
            assert refused.status_code == 400, bad
            assert refused.json()["error"]["param"] == param, refused.text
