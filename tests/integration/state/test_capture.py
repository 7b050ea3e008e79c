"""Sampled conversations for labelling (``state.capture``) on a real redis-server."""

from __future__ import annotations

import random

import pytest

from gateway.state import ConversationCapture, StateUnavailableError
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
    assert not store.capture.enabled and not any(store.capture.sampled() for _ in range(1000))  # off by default

    def capture(share: float) -> ConversationCapture:
        return ConversationCapture(store.client, store.keys, store.health, CaptureConfig(share=share), random.Random(7))

    quarter = capture(0.25)
    draws = sum(quarter.sampled() for _ in range(4000))
    assert 900 < draws < 1100  # 1000 expected; binomial sd ~27
    assert all(capture(1.0).sampled() for _ in range(1000))
