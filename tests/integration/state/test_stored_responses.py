"""Stored Responses API responses on a real Redis: TTL, size limit, tenants, corrupt records, outages."""

from __future__ import annotations

import pytest

from gateway.state import StoredResponse
from gateway.state.errors import StateUnavailableError
from tests.integration.state.conftest import StoreFactory, dead_redis_url


def record(response_id: str = "resp_1", text: str = "hi") -> StoredResponse:
    items = [{"id": "msg_1", "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}]
    return StoredResponse({"id": response_id, "object": "response"}, [{"role": "user", "content": text}], items)


async def test_a_record_round_trips_with_its_ttl_and_is_per_tenant(make_store: StoreFactory) -> None:
    store = make_store(responses={"ttl_s": 60})
    assert await store.responses.put("acme", record())
    kept = await store.responses.get("acme", "resp_1")
    assert kept is not None
    assert (kept.response, kept.conversation) == (
        {"id": "resp_1", "object": "response"},
        [{"role": "user", "content": "hi"}],
    )
    assert kept.input_items == record().input_items
    keys = [key async for key in store.client.scan_iter(match=f"{store.keys.prefix}:resp:*")]
    assert len(keys) == 1 and "acme" not in keys[0].decode()  # the tenant is hashed into the key
    assert 0 < await store.client.pttl(keys[0]) <= 60_000
    assert await store.responses.get("other", "resp_1") is None
    assert not await store.responses.delete("other", "resp_1")
    assert await store.responses.delete("acme", "resp_1")
    assert await store.responses.get("acme", "resp_1") is None


async def test_oversized_corrupt_and_odd_ids_are_not_errors(make_store: StoreFactory) -> None:
    store = make_store(responses={"max_record_bytes": 1024})
    assert not await store.responses.put("acme", record(text="x" * 2000))
    assert await store.responses.get("acme", "resp_1") is None
    assert await store.responses.put("acme", record("resp_2"))
    keys = [key async for key in store.client.scan_iter(match=f"{store.keys.prefix}:resp:*")]
    await store.client.set(keys[0], b"{not json")
    assert await store.responses.get("acme", "resp_2") is None
    # Ids this gateway never hands out are simply not found (no key is built from them).
    for odd in ("", "{x}", "a b", "x" * 200):
        assert await store.responses.get("acme", odd) is None
        assert not await store.responses.delete("acme", odd)


async def test_a_dead_redis_keeps_nothing_and_reads_fail_loudly(make_store: StoreFactory) -> None:
    store = make_store(dead_redis_url())
    assert not await store.responses.put("acme", record())
    for call in (store.responses.get, store.responses.delete):
        with pytest.raises(StateUnavailableError) as unavailable:
            await call("acme", "resp_1")
        assert unavailable.value.status_code == 503
