"""The event logs of streamed background responses on a real Redis: order, resumption,
idempotent writes, expiry, tenants, deletion with the response, and outages."""

from __future__ import annotations

import json
import time

import pytest

from gateway.serving.background_stream import EventPublisher, replay_events
from gateway.serving.responses_output import event_frame, frame_kind
from gateway.state import LoggedEvent, ResponseEventLog, StoredResponse
from gateway.state.errors import StateUnavailableError
from tests.integration.state.conftest import StoreFactory, dead_redis_url


def events(*kinds: str, first: int = 0) -> list[LoggedEvent]:
    return [
        LoggedEvent(first + n, kind, event_frame(kind, first + n, {"n": first + n})) for n, kind in enumerate(kinds)
    ]


async def test_events_read_back_in_order_from_after_any_sequence_number(make_store: StoreFactory) -> None:
    store = make_store(responses={"background_stream_ttl_s": 60})
    log = store.response_events
    written = events("response.created", "response.queued", "response.in_progress", "response.completed")
    await log.append("acme", "resp_1", written[:2])
    await log.append("acme", "resp_1", written[2:])
    assert await log.read("acme", "resp_1", -1, wait=False) == written
    assert await log.read("acme", "resp_1", 1, wait=False) == written[2:]
    assert await log.read("acme", "resp_1", 3, wait=False) == []
    # Another tenant has no such log; the key holds no tenant name and expires.
    assert await log.read("other", "resp_1", -1, wait=False) == []
    assert not await log.exists("other", "resp_1") and await log.exists("acme", "resp_1")
    keys = [key async for key in store.client.scan_iter(match=f"{store.keys.prefix}:resp:*:events")]
    assert len(keys) == 1 and b"acme" not in keys[0]
    assert 0 < await store.client.pttl(keys[0]) <= 60_000


async def test_a_repeated_write_adds_nothing_and_an_empty_wait_returns_after_the_block(
    make_store: StoreFactory,
) -> None:
    log = make_store().response_events
    written = events("response.created", "response.queued", "response.in_progress")
    await log.append("acme", "resp_1", written[:2])
    # A write that timed out after Redis applied it is sent again with the next events.
    await log.append("acme", "resp_1", written)
    assert await log.read("acme", "resp_1", -1, wait=False) == written
    started = time.monotonic()
    assert await log.read("acme", "resp_1", 2, wait=True) == []
    assert time.monotonic() - started >= 0.1  # it waited for a new event (block 0.25 s at most)


async def test_deleting_the_response_deletes_its_events(make_store: StoreFactory) -> None:
    store = make_store()
    assert await store.responses.put("acme", StoredResponse({"id": "resp_1", "object": "response"}, []))
    await store.response_events.append("acme", "resp_1", events("response.created"))
    assert await store.responses.delete("acme", "resp_1")
    assert not await store.response_events.exists("acme", "resp_1")


class FlakyLog:
    """An event log that refuses the next ``failures`` writes, then writes to a real one."""

    def __init__(self, real: ResponseEventLog, failures: int) -> None:
        self.real = real
        self.failures = failures

    async def append(self, tenant: str, response_id: str, logged: list[LoggedEvent]) -> None:
        if self.failures:
            self.failures -= 1
            raise StateUnavailableError("redis is away")
        await self.real.append(tenant, response_id, logged)


async def test_the_publisher_keeps_events_redis_refused_and_writes_them_next(make_store: StoreFactory) -> None:
    log = make_store().response_events
    flaky = FlakyLog(log, failures=2)
    publisher = EventPublisher(flaky, "acme", "resp_1")  # type: ignore[arg-type]
    first = [event_frame("response.created", 0, {}), event_frame("response.queued", 1, {})]
    with pytest.raises(StateUnavailableError):
        await publisher.publish(first, strict=True)  # the creator's first events: a 503, not a silent loss
    await publisher.publish([event_frame("response.in_progress", 2, {})])  # refused: kept
    assert await log.read("acme", "resp_1", -1, wait=False) == []
    await publisher.drain(attempts=2, delay_s=0.01)
    logged = await log.read("acme", "resp_1", -1, wait=False)
    assert [(e.sequence, e.kind) for e in logged] == [
        (0, "response.created"),
        (1, "response.queued"),
        (2, "response.in_progress"),
    ]
    assert publisher.next_sequence == 3


async def test_a_dead_redis_is_a_503_for_readers(make_store: StoreFactory) -> None:
    log = make_store(dead_redis_url()).response_events
    with pytest.raises(StateUnavailableError) as unavailable:
        await log.read("acme", "resp_1", -1, wait=True)
    assert unavailable.value.status_code == 503
    with pytest.raises(StateUnavailableError):
        await log.append("acme", "resp_1", events("response.created"))


async def test_a_reader_that_loses_redis_mid_stream_is_told_in_the_stream(make_store: StoreFactory) -> None:
    log = make_store(dead_redis_url()).response_events

    async def running() -> dict[str, object] | None:
        return None

    frames = [
        frame async for frame in replay_events(log, "acme", "resp_1", after=4, ended=running, poll_s=0.1, grace_s=0.2)
    ]
    assert len(frames) == 1 and frame_kind(frames[0]) == "error"
    error = json.loads(frames[0].decode().split("data: ", 1)[1])
    assert error["code"] == "state_unavailable" and error["sequence_number"] == 5
