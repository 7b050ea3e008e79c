"""Conversations on a real Redis: items in order, pages both ways, reads and deletes by id, the
item limit (and a response's turn past it), expiry, tenants, and outages."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import InvalidRequestError, NotFoundError
from gateway.state.errors import StateUnavailableError
from tests.integration.state.conftest import StoreFactory, dead_redis_url


def message(n: int) -> dict[str, Any]:
    return {"id": f"msg_{n}", "type": "message", "role": "user", "content": [{"type": "input_text", "text": str(n)}]}


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


async def test_items_page_both_ways_and_are_read_and_deleted_by_id(make_store: StoreFactory) -> None:
    conversations = make_store(conversations={"ttl_s": 60}).conversations
    created = await conversations.create("acme", "conv_1", {"k": "v"}, [message(n) for n in range(5)])
    assert (created.metadata, created.as_object()["object"]) == ({"k": "v"}, "conversation")
    page = await conversations.items("acme", "conv_1", limit=2)
    assert ids(page.items) == ["msg_4", "msg_3"] and page.has_more
    page = await conversations.items("acme", "conv_1", limit=2, after="msg_3")
    assert ids(page.items) == ["msg_2", "msg_1"] and page.has_more
    page = await conversations.items("acme", "conv_1", limit=2, after="msg_1")
    assert ids(page.items) == ["msg_0"] and not page.has_more
    page = await conversations.items("acme", "conv_1", limit=3, order="asc", after="msg_0")
    assert ids(page.items) == ["msg_1", "msg_2", "msg_3"] and page.has_more
    assert (await conversations.items("acme", "conv_1", limit=5, after="msg_nothing")).items == []
    assert await conversations.item("acme", "conv_1", "msg_2") == message(2)
    assert await conversations.delete_item("acme", "conv_1", "msg_2")
    assert not await conversations.delete_item("acme", "conv_1", "msg_2")
    assert await conversations.item("acme", "conv_1", "msg_2") is None
    assert ids(await conversations.all_items("acme", "conv_1")) == ["msg_0", "msg_1", "msg_3", "msg_4"]
    # Scoped by tenant; the keys hold no tenant name, share one hash tag, and expire.
    assert await conversations.get("other", "conv_1") is None
    store = make_store()
    keys = [key async for key in store.client.scan_iter(match=f"{store.keys.prefix}:{{conv:*")]
    assert len(keys) == 3 and all(b"acme" not in key for key in keys)
    assert len({key.split(b"}")[0] for key in keys}) == 1
    assert all(0 < ttl <= 60_000 for ttl in [await store.client.pttl(key) for key in keys])
    assert await conversations.delete("acme", "conv_1") and not await conversations.delete("acme", "conv_1")
    assert [key async for key in store.client.scan_iter(match=f"{store.keys.prefix}:{{conv:*")] == []


async def test_the_item_limit_holds_except_for_a_response_s_turn(make_store: StoreFactory) -> None:
    conversations = make_store(conversations={"max_items": 3}).conversations
    await conversations.create("acme", "conv_1", {}, [message(0), message(1)])
    with pytest.raises(InvalidRequestError, match="more than 3 items"):
        await conversations.append("acme", "conv_1", [message(2), message(3)])
    assert ids(await conversations.all_items("acme", "conv_1")) == ["msg_0", "msg_1"]  # nothing half-added
    assert await conversations.append("acme", "conv_1", [message(2), message(3)], within_limit=False) == 4
    with pytest.raises(NotFoundError, match="not found"):
        await conversations.append("acme", "conv_missing", [message(0)])
    with pytest.raises(NotFoundError):
        await conversations.append("acme", "{odd}", [message(0)])
    assert await conversations.get("acme", "conv_missing") is None  # the failed append made nothing


async def test_metadata_updates_and_a_dead_redis_is_a_503(make_store: StoreFactory) -> None:
    conversations = make_store().conversations
    await conversations.create("acme", "conv_1", {"a": "1"}, [])
    updated = await conversations.update("acme", "conv_1", {"b": "2"})
    assert updated is not None and updated.metadata == {"b": "2"}
    assert (await conversations.get("acme", "conv_1")).metadata == {"b": "2"}  # type: ignore[union-attr]
    assert await conversations.update("acme", "conv_nothing", {}) is None
    dead = make_store(dead_redis_url()).conversations
    with pytest.raises(StateUnavailableError) as unavailable:
        await dead.get("acme", "conv_1")
    assert unavailable.value.status_code == 503
