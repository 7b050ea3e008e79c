"""The cost ledger equals what clients were told, under concurrency and across a Redis restart."""

from __future__ import annotations

import asyncio
import json
import random
from decimal import Decimal
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway.redis_server import EmbeddedRedis
from gateway.serving.assembly import ReplicaServices
from tests.fakes.engines import ScriptedEngine
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.integration.conftest import AppFactory, flushed_totals, gateway_config

CHAT = "/v1/chat/completions"


async def one_request(client: httpx.AsyncClient, rng: random.Random) -> tuple[Decimal, int]:
    """Send a random request; returns (cost reported to the client, completion tokens)."""
    model = rng.choice(["small-model", "fake-large"])
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "x " * rng.randint(1, 40)}],
        "max_tokens": rng.randint(1, 3),
    }
    if rng.random() < 0.5:
        response = await client.post(CHAT, json=body)
        assert response.status_code == 200, response.text
        return Decimal(response.headers["x-slm-router-cost-usd"]), response.json()["usage"]["completion_tokens"]
    body.update(stream=True, stream_options={"include_usage": True})
    async with client.stream("POST", CHAT, json=body) as response:
        assert response.status_code == 200
        frames = [line[6:] async for line in response.aiter_lines() if line.startswith("data: ")]
    usage = json.loads(frames[-2])["usage"]
    return Decimal(repr(usage["slm_router"]["cost_usd"])), usage["completion_tokens"]


async def ledger_figures(services: ReplicaServices) -> tuple[Decimal, int, int]:
    totals = await flushed_totals(services)
    cost = sum((Decimal(s.counts.cost_nanos) for s in totals), Decimal(0)) / Decimal(10**9)
    return cost, sum(s.counts.requests for s in totals), sum(s.counts.completion_tokens for s in totals)


async def test_two_thousand_concurrent_requests_on_two_replicas(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> None:
    config = gateway_config(redis_server.url, fake_upstream.base_url)
    small = ScriptedEngine(model="small-model", pieces=["a", "b", "c"], prompt_tokens=7)
    async with (
        make_app(config, small=small, scripted_large=True) as (one, services),
        make_app(config, small=small, scripted_large=True) as (two, _),
    ):
        rng = random.Random(42)
        semaphore = asyncio.Semaphore(64)

        async def bounded(index: int) -> tuple[Decimal, int]:
            async with semaphore:
                return await one_request(one if index % 2 else two, rng)

        results = await asyncio.gather(*(bounded(i) for i in range(2000)))
        reported_cost = sum((cost for cost, _ in results), Decimal(0))
        reported_tokens = sum(tokens for _, tokens in results)
        ledger_cost, ledger_requests, ledger_tokens = await ledger_figures(services)
        scrape = (await one.get("/metrics")).text

    assert ledger_requests == 2000
    assert ledger_tokens == reported_tokens
    assert abs(ledger_cost - reported_cost) <= Decimal("1e-9"), (ledger_cost, reported_cost)
    prom = {f.name: f for f in text_string_to_metric_families(scrape)}
    prom_cost = sum(s.value for s in prom["slm_router_ledger_cost_usd"].samples if s.name.endswith("_total"))
    prom_requests = sum(s.value for s in prom["slm_router_ledger_requests"].samples if s.name.endswith("_total"))
    assert prom_requests == 2000
    assert abs(Decimal(repr(prom_cost)) - reported_cost) <= Decimal("1e-9")


async def test_redis_restart_mid_traffic_loses_no_ledger_entry(
    make_app: AppFactory, fake_upstream: FakeOpenAIUpstream, tmp_path: Path
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", persist=True)
    server.start()
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    config = gateway_config(server.url, fake_upstream.base_url)
    rng = random.Random(7)
    try:
        async with make_app(config, scripted_large=True) as (client, services):
            before = [await one_request(client, rng) for _ in range(30)]
            server.stop()
            during = [await one_request(client, rng) for _ in range(40)]  # serving continues without Redis
            server = EmbeddedRedis(tmp_path / "redis", port=port, persist=True)
            server.start()
            after = [await one_request(client, rng) for _ in range(30)]
            ledger_cost, ledger_requests, ledger_tokens = await ledger_figures(services)
    finally:
        server.stop()
    everything = before + during + after
    assert ledger_requests == 100
    assert ledger_tokens == sum(tokens for _, tokens in everything)
    assert abs(ledger_cost - sum((c for c, _ in everything), Decimal(0))) <= Decimal("1e-9")
