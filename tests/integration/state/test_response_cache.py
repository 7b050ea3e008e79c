"""The shared response cache in a real Redis: hits, misses, TTL, size bounds, normalisation."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.integration.state.conftest import StoreFactory, dead_redis_url


def request(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "router", "messages": [{"role": "user", "content": text}], "temperature": 0, **extra}


def response(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "smollm2-135m-instruct",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


async def test_hit_and_miss_across_replicas(make_store: StoreFactory) -> None:
    replica_a, replica_b = make_store(cache={"enabled": True}), make_store(cache={"enabled": True})
    assert replica_a.cache.enabled
    assert await replica_a.cache.get(request("hi")) is None
    assert await replica_a.cache.put(request("hi"), response("hello"))
    assert await replica_b.cache.get(request("hi")) == response("hello")
    assert await replica_b.cache.get(request("hi!")) is None
    assert (replica_a.cache.misses, replica_b.cache.hits, replica_b.cache.misses) == (1, 1, 1)


async def test_normalised_requests_hit_the_same_entry(make_store: StoreFactory) -> None:
    cache = make_store().cache
    assert await cache.put(request("hi", max_tokens=8), response("hello"))
    same = {
        "model": "router",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "temperature": 0.0,
        "max_completion_tokens": 8,
        "user": "someone",
        "stream": False,
        "unknown_field": {"x": 1},
    }
    assert await cache.get(same) == response("hello")
    assert await cache.get(request("hi", max_tokens=9)) is None
    assert await cache.get(request("hi", max_tokens=8), scope="other-tenant") is None


async def test_entries_expire(make_store: StoreFactory) -> None:
    store = make_store(cache={"enabled": True, "ttl_s": 0.6})
    assert await store.cache.put(request("ttl"), response("soon gone"))
    assert await store.cache.get(request("ttl")) is not None
    await asyncio.sleep(0.7)
    assert await store.cache.get(request("ttl")) is None


async def test_max_entries_evicts_oldest(make_store: StoreFactory) -> None:
    store = make_store(cache={"enabled": True, "max_entries": 3})
    for i in range(5):
        assert await store.cache.put(request(f"q{i}"), response(f"a{i}"))
    assert [await store.cache.get(request(f"q{i}")) is not None for i in range(5)] == [False, False, True, True, True]
    assert await store.client.zcard(store.keys.cache_index()) == 3
    entries = [k async for k in store.client.scan_iter(match=store.keys.cache_entry_prefix() + "*")]
    assert len(entries) == 3


async def test_expired_index_members_are_pruned(make_store: StoreFactory) -> None:
    store = make_store(cache={"enabled": True, "ttl_s": 0.1, "max_entries": 100})
    for i in range(3):
        await store.cache.put(request(f"old{i}"), response("x"))
    await asyncio.sleep(0.15)
    await store.cache.put(request("new"), response("y"))
    assert await store.client.zcard(store.keys.cache_index()) == 1


async def test_oversized_and_uncachable(make_store: StoreFactory) -> None:
    store = make_store(cache={"enabled": True, "max_entry_bytes": 1024})
    assert not await store.cache.put(request("big"), response("x" * 2000))
    assert await store.cache.get(request("big")) is None
    image = {"model": "router", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}
    assert not await store.cache.put(image, response("x"))
    assert await store.cache.get(image) is None
    assert not await store.cache.put(request("nan"), {"x": float("nan")})


async def test_redis_down_is_a_miss(make_store: StoreFactory) -> None:
    store = make_store(dead_redis_url())
    assert await store.cache.get(request("hi")) is None
    assert not await store.cache.put(request("hi"), response("hello"))
    assert store.health.degraded
