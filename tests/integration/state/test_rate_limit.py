"""RPM/TPM limits shared by independent replicas on one real Redis, and Redis-down policies."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gateway.redis_server import EmbeddedRedis
from gateway.state import StateStore
from tests.integration.state.conftest import StoreFactory, dead_redis_url


async def test_rpm_is_shared_across_two_replicas(make_store: StoreFactory) -> None:
    replica_a, replica_b = make_store(), make_store()
    assert replica_a.client is not replica_b.client
    decisions = []
    for i in range(5):
        replica = replica_a if i % 2 == 0 else replica_b
        decisions.append(await replica.rate_limiter.check_and_consume("k1", rpm=5, tpm=None))
    assert all(d.allowed for d in decisions)
    assert [d.remaining_requests for d in decisions] == [4, 3, 2, 1, 0]
    sixth = await replica_b.rate_limiter.check_and_consume("k1", rpm=5, tpm=None)
    assert not sixth.allowed
    assert sixth.limited_by == "rpm"
    # GCRA refills one request every 60/5 = 12 s.
    assert 11.0 < sixth.retry_after_s <= 12.0
    assert sixth.headers()["Retry-After"] == "12"
    # Another key has its own allowance.
    assert (await replica_a.rate_limiter.check_and_consume("k2", rpm=5, tpm=None)).allowed


async def test_concurrent_requests_never_overspend(make_store: StoreFactory) -> None:
    replicas = [make_store() for _ in range(3)]
    results = await asyncio.gather(
        *(replicas[i % 3].rate_limiter.check_and_consume("burst", rpm=20, tpm=None) for i in range(60))
    )
    assert not any(d.degraded for d in results), "Redis timed out: the decisions were fail-open guesses"
    assert sum(d.allowed for d in results) == 20


async def test_tpm_limit_and_usage_correction(make_store: StoreFactory) -> None:
    limiter = make_store().rate_limiter
    first = await limiter.check_and_consume("k", rpm=None, tpm=1000, tokens_estimate=600)
    assert first.allowed and first.tokens_charged == 600 and first.remaining_tokens == 400
    assert first.remaining_requests is None
    second = await limiter.check_and_consume("k", rpm=None, tpm=1000, tokens_estimate=600)
    assert not second.allowed and second.limited_by == "tpm"
    assert second.tokens_charged == 0
    # 200 tokens missing at 1000/min: 12 s.
    assert 11.0 < second.retry_after_s <= 12.0
    # The call used only 100 tokens: the refund makes room again.
    assert await limiter.record_tokens("k", 1000, actual_tokens=100, charged_tokens=first.tokens_charged)
    third = await limiter.check_and_consume("k", rpm=None, tpm=1000, tokens_estimate=600)
    assert third.allowed and third.remaining_tokens == 300
    # It used 2600 tokens instead: the key is in debt, even a zero-token request waits.
    assert await limiter.record_tokens("k", 1000, actual_tokens=2600, charged_tokens=third.tokens_charged)
    fourth = await limiter.check_and_consume("k", rpm=None, tpm=1000, tokens_estimate=0)
    assert not fourth.allowed and fourth.retry_after_s > 100


async def test_both_limits_and_oversized_estimates(make_store: StoreFactory) -> None:
    limiter = make_store().rate_limiter
    # An estimate above the whole minute's allowance is charged as the allowance, so the
    # request can run once the bucket is full (instead of a 429 forever).
    big = await limiter.check_and_consume("k", rpm=10, tpm=500, tokens_estimate=10_000)
    assert big.allowed and big.tokens_charged == 500 and big.remaining_tokens == 0
    denied = await limiter.check_and_consume("k", rpm=10, tpm=500, tokens_estimate=1)
    assert not denied.allowed and denied.limited_by == "tpm"
    # A denied request consumed nothing: the request allowance is untouched.
    assert denied.remaining_requests == 9
    headers = denied.headers()
    assert headers["x-ratelimit-remaining-requests"] == "9" and headers["x-ratelimit-remaining-tokens"] == "0"


async def test_no_limits_needs_no_redis() -> None:
    store = StateStore.from_url(dead_redis_url(), environ={})
    decision = await store.rate_limiter.check_and_consume("k", rpm=None, tpm=0, tokens_estimate=50)
    assert decision.allowed and not decision.degraded
    assert not store.health.degraded
    await store.close()


@pytest.mark.parametrize("fail_open", [True, False])
async def test_redis_down_policy(make_store: StoreFactory, fail_open: bool) -> None:
    store = make_store(dead_redis_url(), rate_limits={"fail_open_when_redis_down": fail_open})
    decision = await store.rate_limiter.check_and_consume("k", rpm=5, tpm=100, tokens_estimate=10)
    assert decision.degraded and decision.allowed is fail_open
    assert store.health.degraded
    # Until the next probe, calls do not even try Redis.
    again = await store.rate_limiter.check_and_consume("k", rpm=5, tpm=100, tokens_estimate=10)
    assert again.degraded and again.allowed is fail_open
    if not fail_open:
        assert again.retry_after_s == store.health.probe_interval_s
    assert not await store.rate_limiter.record_tokens("k", 100, 50, 10)


async def test_black_holed_redis_never_hangs_a_request(make_store: StoreFactory) -> None:
    """A Redis that accepts connections but never answers costs one op timeout, then nothing."""
    received: list[bytes] = []
    writers: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)  # read what comes, never answer
        while chunk := await reader.read(4096):
            received.append(chunk)

    hole = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        port = hole.sockets[0].getsockname()[1]
        store = make_store(f"redis://127.0.0.1:{port}/0", op_timeout_s=0.2, connect_timeout_s=0.2)
        started = time.monotonic()
        first = await store.rate_limiter.check_and_consume("k", rpm=5, tpm=None)
        first_s = time.monotonic() - started
        await asyncio.sleep(0.05)  # let the server read everything the first call sent
        sent_by_first = len(received)
        second = await store.rate_limiter.check_and_consume("k", rpm=5, tpm=None)
        await asyncio.sleep(0.05)
    finally:
        hole.close()
        for writer in writers:
            writer.close()
    assert first.degraded and first.allowed and second.degraded
    # One op timeout (0.2 s) with no retry: well under a second even on a stalled box.
    assert first_s < 1.0, first_s
    # The first call reached the black hole; the second sent nothing at all (the health gate
    # answers until the next probe), so it cannot have waited for a timeout.
    assert sent_by_first > 0
    assert len(received) == sent_by_first
    assert "Timeout" in (store.health.last_error or "")


async def test_recovery_after_restart(make_store: StoreFactory, tmp_path: Path) -> None:
    state = tmp_path / "redis"
    server = EmbeddedRedis(state, persist=False)
    server.start()
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    store = make_store(server.url, probe_interval_s=0.05)
    assert (await store.rate_limiter.check_and_consume("k", rpm=100, tpm=None)).allowed
    server.stop()
    assert (await store.rate_limiter.check_and_consume("k", rpm=100, tpm=None)).degraded
    with EmbeddedRedis(state, port=port, persist=False):
        await asyncio.sleep(0.06)  # past the probe interval
        decision = await store.rate_limiter.check_and_consume("k", rpm=100, tpm=None)
        assert decision.allowed and not decision.degraded
        assert not store.health.degraded


async def test_limits_for_uses_key_limits_then_defaults(make_store: StoreFactory) -> None:
    store = make_store(rate_limits={"default_rpm": 30, "default_tpm": 9000})
    _, own = await store.api_keys.create("own", "acme", rpm_limit=5)
    _, plain = await store.api_keys.create("plain", "acme")
    assert store.rate_limiter.limits_for(own) == (5, 9000)
    assert store.rate_limiter.limits_for(plain) == (30, 9000)
    rpm, tpm = store.rate_limiter.limits_for(own)
    decision = await store.rate_limiter.check_and_consume(own.key_id, rpm, tpm, tokens_estimate=100)
    assert decision.allowed and decision.remaining_requests == 4 and decision.remaining_tokens == 8900
