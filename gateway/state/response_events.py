"""The event log of a streamed background response, shared by every replica.

A background response created with ``stream: true`` writes each Responses API event it
sends to a Redis stream, so that the client that created it, and any client later on any
replica (``GET /v1/responses/{id}?stream=true&starting_after=N``), reads the same events
from wherever it left off. An event of sequence number ``n`` is stream entry ``0-<n+1>``:
the entry ids are the sequence numbers, so "after N" is one ``XREAD`` and a write repeated
after a timeout cannot add an event twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from gateway.state.config import ResponseStoreConfig
from gateway.state.errors import StateUnavailableError
from gateway.state.health import RedisHealth
from gateway.state.keys import KeySpace
from gateway.state.stored_responses import tenant_tag

__all__ = ["LoggedEvent", "ResponseEventLog"]

T = TypeVar("T")

#: Events one read returns at most (a long answer is read in several).
_READ_COUNT = 512


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """One event of a response stream: its sequence number, type and SSE frame as sent."""

    sequence: int
    kind: str
    frame: bytes


class ResponseEventLog:
    """Appends and reads the events of streamed background responses
    (``<p>:resp:<tenant hash>:<id>:events``)."""

    def __init__(
        self,
        client: Redis,
        keys: KeySpace,
        health: RedisHealth,
        config: ResponseStoreConfig,
        *,
        block_s: float,
    ) -> None:
        """``block_s``: how long a read waits for new events; below the client's socket
        timeout, or every quiet wait would read as a Redis failure."""
        self._client = client
        self._keys = keys
        self._health = health
        self._ttl_ms = int(config.background_stream_ttl_s * 1000)
        self._block_ms = max(1, int(block_s * 1000))

    def _key(self, tenant: str, response_id: str) -> str:
        return self._keys.response_events(tenant_tag(tenant), response_id)

    async def append(self, tenant: str, response_id: str, events: Sequence[LoggedEvent]) -> None:
        """Add ``events`` (in sequence order) and keep the log for the configured time after them.

        Idempotent: an event already in the log (a write that timed out after Redis applied
        it) is skipped. Raises :class:`StateUnavailableError` when Redis cannot take them.
        """
        key = self._key(tenant, response_id)

        async def write() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for event in events:
                pipe.xadd(key, {"k": event.kind, "f": event.frame}, id=f"0-{event.sequence + 1}")
            pipe.pexpire(key, self._ttl_ms)
            return list(await pipe.execute(raise_on_error=False))

        results = await self._strict(write)
        for result in results:
            if isinstance(result, ResponseError) and "equal or smaller" not in str(result):
                raise StateUnavailableError(f"the response's events could not be kept: {result}", retry_after=1)

    async def read(self, tenant: str, response_id: str, after: int, *, wait: bool) -> list[LoggedEvent]:
        """The events whose sequence number is above ``after`` (-1: all), oldest first; with
        ``wait``, an empty log waits up to ``block_s`` for the next one."""
        key = self._key(tenant, response_id)
        block = self._block_ms if wait else None

        async def xread() -> Any:
            return await self._client.xread({key: f"0-{after + 1}"}, count=_READ_COUNT, block=block)

        # RESP2 reply: [[key, [(entry id, {field: value}), ...]]], or nothing when none came.
        reply: list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] = await self._strict(xread) or []
        events: list[LoggedEvent] = []
        for _, entries in reply:
            events.extend(_logged(entry_id, fields) for entry_id, fields in entries)
        return events

    async def last(self, tenant: str, response_id: str) -> LoggedEvent | None:
        """The newest event of ``response_id``, or None when its log is empty or gone."""
        key = self._key(tenant, response_id)

        async def xrevrange() -> Any:
            return await self._client.xrevrange(key, count=1)

        entries: list[tuple[bytes, dict[bytes, bytes]]] = await self._strict(xrevrange) or []
        return next((_logged(entry_id, fields) for entry_id, fields in entries), None)

    async def exists(self, tenant: str, response_id: str) -> bool:
        """Whether ``response_id`` has an event log (it was streamed, and the log has not expired)."""
        key = self._key(tenant, response_id)
        return bool(await self._strict(lambda: self._client.exists(key)))

    async def delete(self, tenant: str, response_id: str) -> None:
        """Forget the events of ``response_id``."""
        key = self._key(tenant, response_id)
        await self._strict(lambda: self._client.delete(key))

    async def _strict(self, call: Callable[[], Awaitable[T]]) -> T:
        unavailable = StateUnavailableError("the response's events cannot be reached right now", retry_after=1)
        return await self._health.guarded(call, unavailable)


def _logged(entry_id: bytes, fields: dict[bytes, bytes]) -> LoggedEvent:
    return LoggedEvent(int(entry_id.split(b"-", 1)[1]) - 1, fields[b"k"].decode(), fields[b"f"])
