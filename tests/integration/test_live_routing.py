"""Live routing controls across two replicas over a real Redis: change, audit, target, budget."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

from gateway.redis_server import EmbeddedRedis
from gateway.routing import ThresholdPolicy
from gateway.serving.assembly import ReplicaServices
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.integration.conftest import ADMIN_KEY, AppFactory, gateway_config
from tests.unit.test_routing_policy import LengthScorer

CHAT = "/v1/chat/completions"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}", "x-slm-router-operator": "alice"}


def routed(services: ReplicaServices, threshold: float = 0.5) -> None:
    services.chat.set_policy(ThresholdPolicy(["small", "large"], LengthScorer(), [threshold], "small"))


def config(redis_url: str, upstream: str, prefix: str) -> Any:
    return gateway_config(redis_url, upstream, state={"prefix": prefix})


async def ask(client: httpx.AsyncClient, length: int, **headers: str) -> httpx.Response:
    body = {"model": "router", "messages": [{"role": "user", "content": "x" * length}], "max_tokens": 2}
    return await client.post(CHAT, json=body, headers=headers)


async def test_a_change_through_one_replica_reaches_the_other_within_a_second(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> None:
    prefix = f"lr{uuid.uuid4().hex[:6]}"
    cfg = config(redis_server.url, fake_upstream.base_url, prefix)
    async with make_app(cfg, scripted_large=True) as (one, s1), make_app(cfg, scripted_large=True) as (two, s2):
        routed(s1)
        routed(s2)
        assert (await ask(two, 30)).headers["x-slm-router-tier"] == "small"
        changed = await one.put("/admin/routing", json={"threshold": 0.1}, headers=ADMIN)
        assert changed.status_code == 200 and changed.json()["effective_thresholds"] == [0.1]
        started = time.monotonic()
        while (await ask(two, 30)).headers["x-slm-router-tier"] != "large":
            assert time.monotonic() - started < 1.0, "the change did not reach the other replica within 1 s"
            await asyncio.sleep(0.02)
        audit = (await two.get("/admin/routing/audit", headers=ADMIN)).json()["data"]
        assert audit[0]["who"] == "alice"
        assert audit[0]["old"]["thresholds"] is None and audit[0]["new"]["thresholds"] == [0.1]
        assert "at" in audit[0]
    # A restarted replica starts from the stored settings.
    async with make_app(cfg, scripted_large=True) as (again, s3):
        routed(s3)
        assert (await ask(again, 30)).headers["x-slm-router-threshold"] == "0.100000"


async def test_bad_values_and_missing_credential(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> None:
    cfg = config(redis_server.url, fake_upstream.base_url, f"lb{uuid.uuid4().hex[:6]}")
    async with make_app(cfg) as (client, services):
        routed(services)
        assert (await client.put("/admin/routing", json={"threshold": 0.2})).status_code == 403
        for bad in ({"threshold": 1.5}, {"threshold": -1}, {"target_share": 2}, {"thresholds": [0.5, 0.2]}, {"x": 1}):
            response = await client.put("/admin/routing", json=bad, headers=ADMIN)
            assert response.status_code == 400, bad
        assert (await client.put("/admin/routing", json={"mode": "target"}, headers=ADMIN)).status_code == 400
        assert (await client.get("/admin/routing/simulate?threshold=3", headers=ADMIN)).status_code == 400


class OtherRouter(LengthScorer):
    """Another artifact: its scores are on a scale of their own."""

    name = "other@test"


async def test_target_share_and_simulation(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> None:
    cfg = config(redis_server.url, fake_upstream.base_url, f"lt{uuid.uuid4().hex[:6]}")
    async with make_app(cfg, scripted_large=True) as (client, services):
        routed(services, threshold=0.9)
        for length in range(1, 101):  # scores 0.01 .. 1.00
            await ask(client, length)
        await asyncio.sleep(0.6)  # the window flushes four times a second
        simulation = (await client.get("/admin/routing/simulate?threshold=0.5", headers=ADMIN)).json()
        assert simulation["window"] == 100
        assert simulation["large_share"] == 0.51
        assert simulation["actual_large_share"] == 0.11
        assert simulation["cost_usd"] > simulation["actual_cost_usd"] > 0
        await client.put("/admin/routing", json={"target_share": 0.25}, headers=ADMIN)
        state = (await client.get("/admin/routing", headers=ADMIN)).json()
        assert state["settings"]["mode"] == "target"
        threshold = state["effective_thresholds"][0]
        # The realised share so far is 0.11, so the controller aims a little above 0.25.
        assert 0.55 <= threshold <= 0.76, threshold
        # Another artifact: the target was computed on the old router's scores, and the new
        # one has scored nothing yet, so its configured threshold routes meanwhile.
        services.chat.set_policy(ThresholdPolicy(["small", "large"], OtherRouter(), [0.7], "small"))
        assert (await client.get("/admin/routing", headers=ADMIN)).json()["effective_thresholds"] == [0.7]
        await asyncio.sleep(1.3)  # target thresholds are recomputed once a second
        assert (await client.get("/admin/routing", headers=ADMIN)).json()["effective_thresholds"] == [0.7]


async def test_thresholds_set_for_one_router_are_set_aside_for_another_and_reset_restores_the_configured(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> None:
    cfg = config(redis_server.url, fake_upstream.base_url, f"lrr{uuid.uuid4().hex[:6]}")
    async with make_app(cfg, scripted_large=True) as (client, services):
        routed(services, threshold=0.5)
        for length in (10, 20, 30):
            await ask(client, length)
        changed = (await client.put("/admin/routing", json={"threshold": 0.1}, headers=ADMIN)).json()
        assert changed["settings"]["router"] == "length@test" and changed["thresholds_stale"] is False
        assert (await ask(client, 30)).headers["x-slm-router-threshold"] == "0.100000"
        await asyncio.sleep(0.6)  # the window flushes four times a second
        assert (await client.get("/admin/routing/simulate?threshold=0.5", headers=ADMIN)).json()["window"] == 4

        # A new artifact loads live (Serve's reconfigure): 0.1 was chosen for the old scores.
        services.chat.set_policy(ThresholdPolicy(["small", "large"], OtherRouter(), [0.7], "small"))
        state = (await client.get("/admin/routing", headers=ADMIN)).json()
        assert state["router"] == "other@test" and state["thresholds_stale"] is True
        assert state["effective_thresholds"] == [0.7]
        assert (await ask(client, 30)).headers["x-slm-router-threshold"] == "0.700000"
        await asyncio.sleep(0.6)
        # The window holds the new router's scores alone (the target controller reads it too).
        assert (await client.get("/admin/routing/simulate?threshold=0.5", headers=ADMIN)).json()["window"] == 1

        # Back on the router they were set for, the thresholds apply again.
        routed(services, threshold=0.5)
        assert (await ask(client, 30)).headers["x-slm-router-threshold"] == "0.100000"

        # Reset: the configured thresholds, audited; the budget would stay.
        assert (
            await client.put("/admin/routing", json={"reset": True, "threshold": 0.2}, headers=ADMIN)
        ).status_code == 400
        reset = (await client.put("/admin/routing", json={"reset": True}, headers=ADMIN)).json()
        assert reset["settings"]["thresholds"] is None and reset["effective_thresholds"] == [0.5]
        assert (await ask(client, 30)).headers["x-slm-router-threshold"] == "0.500000"
        audit = (await client.get("/admin/routing/audit", headers=ADMIN)).json()["data"]
        assert audit[0]["old"]["thresholds"] == [0.1] and audit[0]["new"]["thresholds"] is None


async def test_budget_exhaustion_serves_small_then_rejects(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> None:
    cfg = config(redis_server.url, fake_upstream.base_url, f"lbud{uuid.uuid4().hex[:6]}")
    async with make_app(cfg, scripted_large=True) as (client, services):
        routed(services)
        assert (await ask(client, 90)).headers["x-slm-router-tier"] == "large"  # spend something
        await client.put("/admin/routing", json={"budget_usd_per_hour": 1e-9}, headers=ADMIN)
        await asyncio.sleep(1.3)  # budgets are re-read once a second
        flagged = await ask(client, 90)
        assert flagged.status_code == 200
        assert flagged.headers["x-slm-router-tier"] == "small"
        assert flagged.headers["x-slm-router-reason"] == "budget"
        await client.put("/admin/routing", json={"over_budget": "reject"}, headers=ADMIN)
        rejected = await ask(client, 90)
        assert rejected.status_code == 429 and int(rejected.headers["retry-after"]) >= 1
        assert rejected.json()["error"]["code"] == "budget_exhausted"
        assert (await ask(client, 10)).status_code == 200  # cheap requests still flow
        state = (await client.get("/admin/routing", headers=ADMIN)).json()
        assert state["budget"]["exhausted"] is True


async def test_tenant_and_key_default_thresholds(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> None:
    prefix = f"lten{uuid.uuid4().hex[:6]}"
    cfg = gateway_config(
        redis_server.url,
        fake_upstream.base_url,
        state={"prefix": prefix},
        routing={"router_artifact": None, "tenant_thresholds": {"thrifty": 0.99}},
    )
    async with make_app(cfg, scripted_large=True) as (client, services):
        routed(services)
        assert (await ask(client, 90)).headers["x-slm-router-tier"] == "large"
        thrifty = await ask(client, 90, **{"x-slm-router-tenant": "thrifty"})
        assert thrifty.headers["x-slm-router-tier"] == "small"
        assert thrifty.headers["x-slm-router-threshold"] == "0.990000"
        # The request's own header still wins over the tenant default.
        own = await ask(client, 90, **{"x-slm-router-tenant": "thrifty", "x-slm-router-threshold": "0.5"})
        assert own.headers["x-slm-router-tier"] == "large"
