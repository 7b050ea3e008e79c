"""Sampled conversations for labelling (``state.capture``) on a real redis-server."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest

from gateway.state import ConversationCapture, StateStore, StateUnavailableError
from gateway.state.config import CaptureConfig
from tests.integration.state.conftest import StoreFactory, dead_redis_url


def _conversation(i: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"question {i}"}]


async def test_kept_newest_first_capped_and_cleared(make_store: StoreFactory) -> None:
    store = make_store(capture={"share": 1.0, "max_entries": 3})
    replica = make_store(capture={"share": 1.0, "max_entries": 3})  # a second replica, same list
    for i in range(5):
        assert await (store if i % 2 else replica).capture.keep(_conversation(i))
    rows, _ = await store.capture.export(limit=10)
    assert rows == [{"messages": _conversation(i)} for i in (4, 3, 2)]  # the oldest two were dropped
    assert await store.capture.export(limit=1) == ([{"messages": _conversation(4)}], 3)
    assert (await replica.capture.export(limit=1))[1] == 3
    assert await replica.capture.clear() == 3
    assert await store.capture.export(limit=10) == ([], 0)


async def test_an_oversized_conversation_is_not_kept(make_store: StoreFactory) -> None:
    store = make_store(capture={"share": 1.0, "max_entry_bytes": 256})
    assert not await store.capture.keep([{"role": "user", "content": "x" * 300}])
    assert await store.capture.keep([{"role": "user", "content": "short"}])
    assert (await store.capture.export(limit=10))[1] == 1


async def test_redis_down_loses_the_sample_not_the_request(make_store: StoreFactory) -> None:
    store = make_store(dead_redis_url(), capture={"share": 1.0})
    assert not await store.capture.keep(_conversation(0))  # no exception: the request goes on
    with pytest.raises(StateUnavailableError):
        await store.capture.export(limit=10)
    with pytest.raises(StateUnavailableError):
        await store.capture.clear()


async def test_the_share_is_the_sampling_rate(make_store: StoreFactory) -> None:
    store = make_store()
    assert not store.capture.enabled and not any(store.capture.sampled("t") for _ in range(1000))  # off by default

    def capture(share: float) -> ConversationCapture:
        return ConversationCapture(store.client, store.keys, store.health, CaptureConfig(share=share), random.Random(7))

    quarter = capture(0.25)
    draws = sum(quarter.sampled("t") for _ in range(4000))
    assert 900 < draws < 1100  # 1000 expected; binomial sd ~27
    assert all(capture(1.0).sampled("t", store=True) for _ in range(1000))


async def test_store_false_and_excluded_tenants_are_never_sampled(make_store: StoreFactory) -> None:
    store = make_store(capture={"share": 1.0, "exclude_tenants": ["acme", "globex"]})
    assert store.capture.sampled("initech") and store.capture.sampled("initech", store=None)
    assert not store.capture.sampled("initech", store=False)
    assert not store.capture.sampled("acme") and not store.capture.sampled("globex", store=True)


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _timed(store: StateStore, clock: _Clock, **config: Any) -> ConversationCapture:
    settings = CaptureConfig(share=1.0, **config)
    return ConversationCapture(store.client, store.keys, store.health, settings, clock=clock)


async def test_conversations_past_max_age_are_dropped(make_store: StoreFactory) -> None:
    store = make_store()
    clock = _Clock()
    capture = _timed(store, clock, max_age_s=100.0)
    assert await capture.keep(_conversation(0))
    clock.now += 60
    assert await capture.keep(_conversation(1))
    assert await capture.export(limit=10) == ([{"messages": _conversation(1)}, {"messages": _conversation(0)}], 2)
    clock.now += 50  # the first is 110 s old now, the second 50 s
    assert await capture.export(limit=10) == ([{"messages": _conversation(1)}], 1)
    # The next keep prunes too, and the key's TTL follows the newest entry.
    assert await capture.keep(_conversation(2))
    ttl_ms = await store.client.pttl(store.keys.captured_conversations())
    assert 90_000 < ttl_ms <= 100_000
    clock.now += 51
    assert await capture.clear() == 1  # only conversation 2 was still within the window
    assert await capture.export(limit=10) == ([], 0)


async def test_the_whole_sample_expires_without_new_captures(make_store: StoreFactory) -> None:
    store = make_store()
    capture = _timed(store, _Clock(), max_age_s=0.3)
    assert await capture.keep(_conversation(0))
    key = store.keys.captured_conversations()
    assert await store.client.exists(key)
    await asyncio.sleep(0.5)  # Redis itself drops the key: no export or keep needed
    assert not await store.client.exists(key)


async def test_without_max_age_nothing_expires_and_an_old_ttl_is_lifted(make_store: StoreFactory) -> None:
    store = make_store()
    clock = _Clock()
    assert await _timed(store, clock, max_age_s=30.0).keep(_conversation(0))
    forever = _timed(store, clock, max_age_s=None)
    clock.now += 10_000
    assert await forever.keep(_conversation(1))
    assert await store.client.pttl(store.keys.captured_conversations()) == -1  # no TTL
    assert (await forever.export(limit=10))[1] == 2


async def test_a_repeated_conversation_is_kept_once_at_its_latest_time(make_store: StoreFactory) -> None:
    store = make_store()
    clock = _Clock()
    capture = _timed(store, clock)
    for i in (0, 1, 0):
        assert await capture.keep(_conversation(i))
        clock.now += 1
    assert await capture.export(limit=10) == ([{"messages": _conversation(0)}, {"messages": _conversation(1)}], 2)


async def test_clear_also_drops_an_earlier_versions_list(make_store: StoreFactory) -> None:
    store = make_store(capture={"share": 1.0})
    legacy = store.keys.legacy_captured_conversations()
    await store.client.lpush(
        legacy, json.dumps({"messages": _conversation(0)}), json.dumps({"messages": _conversation(1)})
    )
    assert await store.capture.keep(_conversation(2))  # the new sample lives beside it, not in it
    assert await store.capture.export(limit=10) == ([{"messages": _conversation(2)}], 1)
    assert await store.capture.clear() == 3
    assert not await store.client.exists(legacy)
