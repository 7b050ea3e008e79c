"""The buffered ledger across a real Redis outage: nothing lost, nothing counted twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.redis_server import EmbeddedRedis
from gateway.state import LedgerOp, StateStore
from tests.integration.state.conftest import StoreFactory


def port_of(server: EmbeddedRedis) -> int:
    return int(server.url.rsplit(":", 1)[1].split("/")[0])


async def totals(store: StateStore, key: str) -> dict[str, int]:
    raw = await store.client.hgetall(key)
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}


def usage_ops(store: StateStore, i: int) -> list[LedgerOp]:
    # Amounts are integers: tokens, and cost in nano-dollars.
    return [
        (store.keys.key_usage("k1"), "requests", 1),
        (store.keys.key_usage("k1"), "tokens", 10 + i),
        (store.keys.key_usage("k1"), "cost_nusd", 1_234_567 * (i + 1)),
        (store.keys.tenant_usage("acme"), "cost_nusd", 1_234_567 * (i + 1)),
    ]


def expected(store: StateStore, n: int) -> tuple[dict[str, int], dict[str, int]]:
    key = {
        "requests": n,
        "tokens": sum(10 + i for i in range(n)),
        "cost_nusd": sum(1_234_567 * (i + 1) for i in range(n)),
    }
    return key, {"cost_nusd": key["cost_nusd"]}


async def test_redis_restart_mid_traffic_keeps_exact_totals(make_store: StoreFactory, tmp_path: Path) -> None:
    state = tmp_path / "redis"
    server = EmbeddedRedis(state)  # persistent: what landed before the stop must survive it
    server.start()
    port = port_of(server)
    store = make_store(server.url, probe_interval_s=0.05)
    await store.start()
    try:
        for i in range(40):
            assert store.ledger.add(usage_ops(store, i))
            if i == 19:
                assert await store.ledger.flush()
                server.stop()  # Redis dies mid-traffic
            await asyncio.sleep(0)
        assert not await store.ledger.flush()
        assert store.health.degraded
        # Buffered while down and coalesced per key: the one send that failed mid-way keeps
        # its own entries (they may have landed), later increments merge into 2 more.
        assert 2 <= store.ledger.pending_entries <= 4
        for i in range(40, 60):
            assert store.ledger.add(usage_ops(store, i))
        server = EmbeddedRedis(state, port=port)
        server.start()
        assert await store.ledger.flush()
        assert store.ledger.pending_entries == 0
        assert not store.health.degraded
        key_totals, tenant_totals = expected(store, 60)
        assert await totals(store, store.keys.key_usage("k1")) == key_totals
        assert await totals(store, store.keys.tenant_usage("acme")) == tenant_totals
        assert store.ledger.dropped_ops == 0
    finally:
        server.stop()


async def test_background_loop_flushes_after_recovery(make_store: StoreFactory, tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", persist=False)
    server.start()
    port = port_of(server)
    store = make_store(server.url, probe_interval_s=0.05)
    await store.start()
    try:
        server.stop()
        for i in range(10):
            store.ledger.add(usage_ops(store, i))
        await asyncio.sleep(0.3)  # the loop tries, fails, backs off
        assert store.ledger.pending_entries == 2 and store.health.degraded
        server = EmbeddedRedis(tmp_path / "redis", port=port, persist=False)
        server.start()
        for _ in range(100):  # backoff is at most a few hundred ms here
            if store.ledger.pending_entries == 0:
                break
            await asyncio.sleep(0.05)
        assert store.ledger.pending_entries == 0
        assert await totals(store, store.keys.key_usage("k1")) == expected(store, 10)[0]
    finally:
        server.stop()


async def test_replayed_entries_are_not_counted_twice(make_store: StoreFactory) -> None:
    """A flush whose replies were lost is re-sent; the per-writer sequence marker skips what landed."""
    store = make_store()
    key = store.keys.key_usage("replay")
    assert store.ledger.add([(key, "tokens", 5)])
    entry = store.ledger._entries[0]  # the entry as it is sent (white-box: simulates a lost reply)
    assert await store.ledger.flush()
    store.ledger._entries.append(entry)  # "reply lost": the same entry is sent again
    assert store.ledger.add([(key, "tokens", 7)])  # a later, new increment
    assert await store.ledger.flush()
    assert await totals(store, key) == {"tokens": 12}
    marker = await store.client.hgetall(store.keys.ledger_marker(key))
    assert len(marker) == 1 and await store.client.pttl(store.keys.ledger_marker(key)) > 0


async def test_script_forgotten_by_redis_is_reloaded(make_store: StoreFactory) -> None:
    """Redis drops cached scripts on restart or SCRIPT FLUSH; the writer reloads and resends once."""
    store = make_store()
    key = store.keys.key_usage("noscript")
    await store.ledger.write([(key, "tokens", 5)])
    await store.client.script_flush()
    await store.ledger.write([(key, "tokens", 7)])
    assert not store.ledger.pending_entries
    assert await totals(store, key) == {"tokens": 12}


async def test_concurrent_writers_on_two_replicas(make_store: StoreFactory) -> None:
    replica_a, replica_b = make_store(), make_store()
    key = replica_a.keys.key_usage("shared")
    await asyncio.gather(*(r.ledger.write([(key, "n", 1), (key, "nusd", 3)]) for r in [replica_a, replica_b] * 50))
    assert await totals(replica_a, key) == {"n": 100, "nusd": 300}


async def test_bounded_buffer_and_bad_ops(make_store: StoreFactory, tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis", persist=False) as server:
        store = make_store(server.url, ledger_buffer_max_entries=2)
    # Redis is gone: the buffer takes 2 keys, merges into them, refuses a third key.
    assert store.ledger.add([("a:{x}", "n", 1), ("b:{x}", "n", 1)])
    assert store.ledger.add([("a:{x}", "n", 5)])
    assert not store.ledger.add([("c:{x}", "n", 1)])
    assert store.ledger.dropped_ops == 1 and store.ledger.pending_entries == 2
    with pytest.raises(ValueError):
        store.ledger.add([("a:{x}", "n", 1.5)])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        store.ledger.add([("a:{x}", "n", True)])
    with pytest.raises(ValueError):
        store.ledger.add([("a:{x}", "n", 2**63)])


async def test_entry_redis_rejects_is_dropped_not_blocking(make_store: StoreFactory) -> None:
    store = make_store()
    bad = f"{store.config.prefix}:{{x}}:not-a-hash"
    await store.client.set(bad, "string value")
    good = store.keys.key_usage("after-bad")
    assert store.ledger.add([(bad, "n", 1)])
    assert store.ledger.add([(good, "n", 2)])
    assert await store.ledger.flush()
    assert store.ledger.dropped_ops == 1
    assert await totals(store, good) == {"n": 2}


async def test_ttl_policy_and_write(make_store: StoreFactory) -> None:
    store = make_store()
    hourly, total = f"{store.config.prefix}:{{ledger}}:h:2026010100", f"{store.config.prefix}:{{ledger}}:total"
    store.ledger.set_ttl_for(lambda key: 3600 if ":h:" in key else None)
    await store.ledger.write([(hourly, "cost_nanos", 5), (total, "cost_nanos", 5)])
    assert store.ledger.pending_entries == 0
    assert 3590 < await store.client.ttl(hourly) <= 3600
    assert await store.client.ttl(total) == -1  # no expiry
    assert await totals(store, total) == {"cost_nanos": 5}
