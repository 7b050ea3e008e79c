"""The ledger against a real redis-server: concurrency across replicas, buckets, scrape."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.accounting import (
    AccountingConfig,
    CostCalculator,
    CostRecorder,
    GpuHourPriceConfig,
    HashIncrement,
    Ledger,
    LedgerLayout,
    RedisLedgerWriter,
    RequestCost,
    nanos_to_usd,
)
from gateway.config import LiteLLMTierConfig, TierConfig, VLLMTierConfig
from gateway.redis_server import EmbeddedRedis
from gateway.telemetry import render_metrics
from tests.conftest import free_port

TIERS: dict[str, TierConfig] = {
    "small": VLLMTierConfig(served_model_name="smollm2-135m-instruct"),
    "large": LiteLLMTierConfig(served_model_name="gpt-4o", model="gpt-4o"),
}
MODEL_COST = {"gpt-4o": {"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05}}
# A price with a non-terminating decimal (1/3.6 micro-dollars per token), so rounding is exercised.
CALCULATOR = CostCalculator.from_config(
    AccountingConfig(prices={"small": GpuHourPriceConfig(gpu_hour_usd=1.0, tokens_per_second=1000)}),
    TIERS,
    model_cost=MODEL_COST,
)
NOW = datetime(2025, 6, 1, 12, 30, tzinfo=UTC)


def client(url: str) -> aioredis.Redis:
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=16, timeout=20)
    return aioredis.Redis(connection_pool=pool)


@pytest.fixture()
async def redis_client(redis_server: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    c = client(redis_server.url)
    yield c
    await c.aclose()


def fresh_layout() -> LedgerLayout:
    return LedgerLayout(prefix=f"test:{uuid.uuid4().hex[:8]}")


Request = tuple[str, str, str, RequestCost]


def random_requests(seed: int, count: int) -> list[Request]:
    rng = random.Random(seed)
    requests = []
    for _ in range(count):
        tier = rng.choice(["small", "small", "small", "large"])
        model = TIERS[tier].served_model_name
        cost = CALCULATOR.cost(tier, rng.randint(1, 8000), rng.randint(0, 2000))
        requests.append((tier, model, f"key_{rng.randint(1, 5)}", cost))
    return requests


async def replay(ledger: Ledger, requests: Sequence[Request]) -> None:
    await asyncio.gather(*(ledger.record(cost, tier=t, model=m, key_id=k) for t, m, k, cost in requests))


def replica_in_own_thread(url: str, layout: LedgerLayout, requests: Sequence[Request]) -> None:
    """A second replica: its own event loop, connection pool and Ledger."""

    async def main() -> None:
        other = client(url)
        try:
            await replay(Ledger(other, layout=layout, clock=lambda: NOW), requests)
        finally:
            await other.aclose()

    asyncio.run(main())


async def test_two_replicas_2000_concurrent_requests_add_up_exactly(
    redis_server: EmbeddedRedis, redis_client: aioredis.Redis
) -> None:
    layout = fresh_layout()
    first, second = random_requests(1, 1000), random_requests(2, 1000)
    ledger = Ledger(redis_client, layout=layout, clock=lambda: NOW)
    await asyncio.gather(
        replay(ledger, first),
        asyncio.to_thread(replica_in_own_thread, redis_server.url, layout, second),
    )
    everything = first + second
    costs = [cost for *_, cost in everything]
    exact_cost = sum(c.cost_nanos for c in costs)
    exact_baseline = sum(c.baseline_nanos for c in costs)

    summary = await ledger.summary(timedelta(hours=1))
    total = summary.total.counts
    assert total.requests == 2000
    assert total.prompt_tokens == sum(c.prompt_tokens for c in costs)
    assert total.completion_tokens == sum(c.completion_tokens for c in costs)
    assert (total.cost_nanos, total.baseline_nanos) == (exact_cost, exact_baseline)
    # What clients were told (floats, one per request) sums to the ledger's figure.
    assert abs(sum(c.cost_usd for c in costs) - total.cost_usd) < 1e-9
    assert abs(sum(c.savings_usd for c in costs) - total.savings_usd) < 1e-9
    by_tier = {row.name: row.counts for row in summary.by_tier}
    for tier in ("small", "large"):
        mine = [c for t, _, _, c in everything if t == tier]
        assert by_tier[tier].requests == len(mine)
        assert by_tier[tier].cost_nanos == sum(c.cost_nanos for c in mine)
    assert by_tier["large"].savings_nanos == 0
    assert 0 < by_tier["small"].savings_pct < 100  # type: ignore[operator]
    by_key = {row.name: row.counts for row in summary.by_key}
    assert sum(c.requests for c in by_key.values()) == 2000 and len(by_key) == 5
    # The day rollup and the all-time totals agree with the hour.
    assert (await ledger.summary(NOW - timedelta(days=3))).total == summary.total
    assert sum((s.counts for s in await ledger.totals()), start=type(total)()) == total

    # A real Prometheus scrape of the exposition shows the same totals.
    text = (await render_metrics(ledger)).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["slm_router_ledger_up"].samples[0].value == 1
    assert families["slm_router_ledger_requests"].type == "counter"

    def scraped(name: str) -> float:
        return sum(s.value for s in families[name].samples if s.name.endswith("_total") or s.name == name)

    assert scraped("slm_router_ledger_requests") == 2000
    assert scraped("slm_router_ledger_prompt_tokens") == total.prompt_tokens
    assert scraped("slm_router_ledger_completion_tokens") == total.completion_tokens
    assert abs(scraped("slm_router_ledger_cost_usd") - nanos_to_usd(exact_cost)) < 1e-9
    assert abs(scraped("slm_router_ledger_baseline_cost_usd") - nanos_to_usd(exact_baseline)) < 1e-9
    assert abs(scraped("slm_router_ledger_savings_usd") - nanos_to_usd(exact_baseline - exact_cost)) < 1e-9
    labels = {tuple(sorted(s.labels)) for s in families["slm_router_ledger_cost_usd"].samples}
    assert labels == {("key_id", "model", "tier")}


async def test_buckets_hours_days_and_retention(redis_client: aioredis.Redis) -> None:
    layout = LedgerLayout(prefix=fresh_layout().prefix, hourly_ttl_s=3600, daily_ttl_s=30 * 86_400)
    ledger = Ledger(redis_client, layout=layout, clock=lambda: NOW)
    moments = [NOW - timedelta(days=2, hours=1), NOW - timedelta(days=1), NOW - timedelta(minutes=50), NOW]
    for moment in moments:
        await ledger.record(RequestCost(10, 1, 100, 1_000), tier="small", model="s", key_id="k", at=moment)
    assert (await ledger.summary(timedelta(hours=1))).total.counts.requests == 2
    assert (await ledger.summary(timedelta(days=1))).total.counts.requests == 3
    assert (await ledger.summary(NOW - timedelta(days=10))).total.counts.requests == 4
    # Ranges reaching past the daily retention read only what can still exist.
    assert (await ledger.summary(datetime(2000, 1, 1))).total.counts.requests == 4
    past = await ledger.summary(NOW - timedelta(days=3), until=NOW - timedelta(days=1, hours=1))
    assert past.total.counts.requests == 1 and past.since == datetime(2025, 5, 29, 12, tzinfo=UTC)
    assert 3500 < await redis_client.ttl(layout.hour_key(NOW)) <= 3600
    assert 30 * 86_400 - 100 < await redis_client.ttl(layout.day_key(NOW)) <= 30 * 86_400
    assert await redis_client.ttl(layout.total_key()) == -1


async def test_injected_writer_gets_the_ops_and_replays_land_in_their_hour(redis_client: aioredis.Redis) -> None:
    class Buffer:
        def __init__(self) -> None:
            self.batches: list[list[HashIncrement]] = []

        async def write(self, ops: Sequence[HashIncrement]) -> None:
            self.batches.append(list(ops))

    layout = fresh_layout()
    buffer = Buffer()
    ledger = Ledger(redis_client, layout=layout, writer=buffer, clock=lambda: NOW)
    then = NOW - timedelta(hours=5)
    ops = await ledger.record(RequestCost(7, 3, 42, 420), tier="small", model="s", key_id=None, at=then)
    assert buffer.batches == [ops]
    assert (await ledger.summary(timedelta(days=1))).total.counts.requests == 0  # nothing written yet
    # Redis is back: the buffer applies its batches with the default writer.
    await RedisLedgerWriter(redis_client, ttl_for=layout.ttl_for).write(buffer.batches[0])
    assert (await ledger.summary(timedelta(hours=1))).total.counts.requests == 0
    summary = await ledger.summary(then)
    assert summary.total.counts.cost_nanos == 42
    assert [row.name for row in summary.by_key] == ["(none)"]


async def test_scrape_answers_when_redis_is_down() -> None:
    dead = aioredis.Redis(port=free_port(), socket_connect_timeout=0.5)
    text = (await render_metrics(Ledger(dead), ledger_timeout_s=0.5)).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert list(families) == ["slm_router_ledger_up"]
    assert families["slm_router_ledger_up"].samples[0].value == 0
    await dead.aclose()


async def test_recorder_prices_records_and_survives_an_outage(redis_client: aioredis.Redis) -> None:
    layout = fresh_layout()
    recorder = CostRecorder(CALCULATOR, Ledger(redis_client, layout=layout, clock=lambda: NOW))
    cost = await recorder.settle(tier="small", model="smollm2-135m-instruct", prompt_tokens=3600, completion_tokens=0)
    assert cost.cost_nanos == 1_000_000  # 3,600 tokens at $1/h over 3,600,000 tokens/h = $0.001
    ledger = Ledger(redis_client, layout=layout, clock=lambda: NOW)
    assert (await ledger.summary(timedelta(hours=1))).total.counts.cost_nanos == 1_000_000

    # No retries: redis-py would otherwise back off for seconds before giving up.
    dead = aioredis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    broken = CostRecorder(CALCULATOR, Ledger(dead))
    cost = await broken.settle(tier="large", model="gpt-4o", prompt_tokens=10, completion_tokens=10)
    assert cost.cost_nanos == 125_000 and broken.failed_writes == 1
    await dead.aclose()
