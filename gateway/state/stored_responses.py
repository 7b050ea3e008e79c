"""Responses kept for ``GET /v1/responses/{id}`` and ``previous_response_id``, shared by every replica.

One JSON record per response, with a TTL: the response object as the client got it, the
conversation that led to it (chat messages, the answer included) that a later request
chaining on it continues, and the input items its own request sent. Records are scoped by
tenant, so one tenant can neither read nor chain on another's responses; the tenant is
hashed into the key, since tenant names come from headers and need not be key-safe.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio import Redis

from gateway.state.config import ResponseStoreConfig
from gateway.state.errors import REDIS_FAILURES, StateUnavailableError, describe_error
from gateway.state.health import RedisHealth
from gateway.state.keys import KeySpace

__all__ = ["ResponseStore", "StoredResponse"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class StoredResponse:
    """A kept response: the object returned to the client, its conversation, and the input
    items its request sent (as listed by ``GET /v1/responses/{id}/input_items``)."""

    __slots__ = ("conversation", "input_items", "response")

    def __init__(
        self,
        response: dict[str, Any],
        conversation: list[dict[str, Any]],
        input_items: list[dict[str, Any]] | None = None,
    ) -> None:
        self.response = response
        self.conversation = conversation
        self.input_items = input_items or []


def tenant_tag(tenant: str) -> str:
    """The key-safe tag of ``tenant`` (a hash: tenant names come from headers)."""
    return hashlib.sha256(tenant.encode()).hexdigest()[:32]


class ResponseStore:
    """Keeps response records in Redis (``<p>:resp:<tenant hash>:<response id>``)."""

    def __init__(self, client: Redis, keys: KeySpace, health: RedisHealth, config: ResponseStoreConfig) -> None:
        self._client = client
        self._keys = keys
        self._health = health
        self._config = config

    def _key(self, tenant: str, response_id: str) -> str:
        return self._keys.stored_response(tenant_tag(tenant), response_id)

    async def put(self, tenant: str, record: StoredResponse) -> bool:
        """Keep ``record``; False when it was not kept (too large, or Redis is down)."""
        value = json.dumps(
            {"response": record.response, "conversation": record.conversation, "input_items": record.input_items},
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        if len(value) > self._config.max_record_bytes:
            logger.warning(
                "response %s not stored: %d bytes, over the limit of %d",
                record.response.get("id"),
                len(value),
                self._config.max_record_bytes,
            )
            return False
        if not self._health.allow_attempt():
            return False
        try:
            await self._client.set(self._key(tenant, record.response["id"]), value, px=int(self._config.ttl_s * 1000))
        except REDIS_FAILURES as exc:
            self._health.record_failure(exc)
            logger.warning("response %s not stored: %s", record.response.get("id"), describe_error(exc))
            return False
        self._health.record_success()
        return True

    async def get(self, tenant: str, response_id: str) -> StoredResponse | None:
        """The record of ``response_id`` for ``tenant``, or None when there is none.

        Raises :class:`StateUnavailableError` when Redis cannot be reached: "not found"
        would be a lie the client might act on.
        """
        try:
            key = self._key(tenant, response_id)
        except ValueError:
            return None  # not an id this gateway hands out
        raw = await self._strict(lambda: self._client.get(key), "read")
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return StoredResponse(
                response=dict(data["response"]),
                conversation=list(data["conversation"]),
                input_items=list(data.get("input_items") or []),
            )
        except (ValueError, KeyError, TypeError):
            logger.warning("dropping a corrupt stored response %s", response_id)
            return None

    async def delete(self, tenant: str, response_id: str) -> bool:
        """Forget ``response_id``; False when there was nothing to forget."""
        try:
            key = self._key(tenant, response_id)
        except ValueError:
            return False
        removed = await self._strict(lambda: self._client.delete(key), "changed")
        if removed:
            # A background response's run state, lease and events go with it (a run still going
            # then finds its state gone and writes no record).
            tag = tenant_tag(tenant)
            kept = (
                self._keys.background_state(tag, response_id),
                self._keys.background_lease(tag, response_id),
                self._keys.response_events(tag, response_id),
            )
            await self._strict(lambda: self._client.delete(*kept), "changed")
        return bool(removed)

    # --- background responses -------------------------------------------------------
    #
    # A background response's record is written when it is created (status "queued"), and
    # once more when it ends: completed or failed by its run, or cancelled by a client. A
    # state key decides which end wins: each end swaps it (SET ... GET) and only the one that
    # found "running" writes the record; a loser puts the winner's state back.

    async def start_background(self, tenant: str, record: StoredResponse, lease_s: float) -> None:
        """Keep ``record`` (a queued background response) as running, leased for ``lease_s``."""
        response_id = record.response["id"]
        if not await self.put(tenant, record):
            raise StateUnavailableError("the background response could not be stored", retry_after=1)
        ttl_ms = int(self._config.ttl_s * 1000)
        await self._strict(
            lambda: self._client.set(
                self._keys.background_state(tenant_tag(tenant), response_id), "running", px=ttl_ms
            ),
            "stored",
        )
        await self.renew_lease(tenant, response_id, lease_s)

    async def renew_lease(self, tenant: str, response_id: str, lease_s: float) -> None:
        """Say this replica still runs ``response_id`` for another ``lease_s``."""
        key = self._keys.background_lease(tenant_tag(tenant), response_id)
        await self._strict(lambda: self._client.set(key, "1", px=int(lease_s * 1000)), "stored")

    async def lease_held(self, tenant: str, response_id: str) -> bool:
        """Whether a replica still runs ``response_id``."""
        key = self._keys.background_lease(tenant_tag(tenant), response_id)
        return bool(await self._strict(lambda: self._client.exists(key), "read"))

    async def background_state(self, tenant: str, response_id: str) -> str | None:
        """``running``, ``done``, ``cancelled``, or None (not a background response, or expired)."""
        key = self._keys.background_state(tenant_tag(tenant), response_id)
        raw = await self._strict(lambda: self._client.get(key), "read")
        return raw.decode() if isinstance(raw, bytes) else raw

    async def end_background(self, tenant: str, record: StoredResponse, *, cancelled: bool = False) -> bool:
        """End a running background response with ``record`` (its final object); False when
        it had already ended (another end won, and its record stands)."""
        key = self._keys.background_state(tenant_tag(tenant), record.response["id"])
        state = "cancelled" if cancelled else "done"
        previous = await self._strict(lambda: self._client.set(key, state, get=True, keepttl=True), "stored")
        previous = previous.decode() if isinstance(previous, bytes) else previous
        if previous != "running":
            # Put the winner's state back (or remove the key this SET made, which has no TTL).
            if previous is None:
                await self._strict(lambda: self._client.delete(key), "stored")
            else:
                winner = previous
                await self._strict(lambda: self._client.set(key, winner, keepttl=True), "stored")
            return False
        await self.put(tenant, record)
        return True

    async def _strict(self, call: Callable[[], Awaitable[T]], action: str) -> T:
        # Reads and deletes answer 503 when Redis is away: "not found" would be a lie.
        unavailable = StateUnavailableError(f"stored responses cannot be {action} right now", retry_after=1)
        return await self._health.guarded(call, unavailable)
