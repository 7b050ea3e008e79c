"""Conversations (``/v1/conversations``), shared by every replica.

A conversation is a record (its creation time and metadata) and its items, oldest first:
Responses API items (messages, function calls and their outputs), each with an id, as
``GET /v1/conversations/{id}/items`` lists them. A response created with ``conversation``
reads them all as its history and appends its input and output items. The items are a Redis
stream (appends are atomic and keep their order, pages are ``XRANGE``), with a hash from item
id to stream entry for reads and deletes by id. Scoped by tenant like stored responses, and
forgotten ``ttl_s`` after the last write.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio import Redis

from gateway.errors import InvalidRequestError, NotFoundError
from gateway.state.config import ConversationStoreConfig
from gateway.state.errors import StateUnavailableError
from gateway.state.health import RedisHealth
from gateway.state.keys import KeySpace
from gateway.state.stored_responses import tenant_tag

__all__ = ["Conversation", "ConversationStore", "ItemPage"]

T = TypeVar("T")

# Append items to an existing conversation, within its item limit, atomically.
# KEYS: record, items, index. ARGV: ttl_ms, max_items, then item id / item JSON pairs.
# Returns the new item count, -1 when the conversation does not exist, -2 when it would be full.
_APPEND_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local count = (#ARGV - 2) / 2
if redis.call('XLEN', KEYS[2]) + count > tonumber(ARGV[2]) then return -2 end
for i = 3, #ARGV, 2 do
  local entry = redis.call('XADD', KEYS[2], '*', 'i', ARGV[i + 1])
  redis.call('HSET', KEYS[3], ARGV[i], entry)
end
for k = 1, 3 do redis.call('PEXPIRE', KEYS[k], ARGV[1]) end
return redis.call('XLEN', KEYS[2])
"""


@dataclass(frozen=True)
class Conversation:
    """A conversation's record."""

    id: str
    created_at: int
    metadata: dict[str, str]

    def as_object(self) -> dict[str, Any]:
        """The conversation as OpenAI's API returns it."""
        return {"id": self.id, "object": "conversation", "created_at": self.created_at, "metadata": self.metadata}


@dataclass(frozen=True)
class ItemPage:
    """One page of a conversation's items, and whether more follow."""

    items: list[dict[str, Any]]
    has_more: bool


class ConversationStore:
    """Keeps conversations in Redis (``<p>:{conv:<tenant hash>:<id>}`` and its ``:items``, ``:index``)."""

    def __init__(self, client: Redis, keys: KeySpace, health: RedisHealth, config: ConversationStoreConfig) -> None:
        self._client = client
        self._keys = keys
        self._health = health
        self._config = config
        self._append = client.register_script(_APPEND_LUA)

    @property
    def max_items(self) -> int:
        """Items a conversation holds at most."""
        return self._config.max_items

    def _three(self, tenant: str, conversation_id: str) -> tuple[str, str, str]:
        tag = tenant_tag(tenant)
        return (
            self._keys.conversation(tag, conversation_id),
            self._keys.conversation_items(tag, conversation_id),
            self._keys.conversation_item_index(tag, conversation_id),
        )

    async def create(
        self, tenant: str, conversation_id: str, metadata: dict[str, str], items: Sequence[dict[str, Any]]
    ) -> Conversation:
        """Keep a new conversation with ``items`` (each with an ``id``)."""
        conversation = Conversation(conversation_id, int(time.time()), dict(metadata))
        record, _, _ = self._three(tenant, conversation_id)
        value = json.dumps({"created_at": conversation.created_at, "metadata": conversation.metadata})
        ttl_ms = int(self._config.ttl_s * 1000)
        await self._strict(lambda: self._client.set(record, value, px=ttl_ms), "stored")
        if items:
            await self.append(tenant, conversation_id, items)
        return conversation

    async def get(self, tenant: str, conversation_id: str) -> Conversation | None:
        """The conversation's record, or None when the tenant has no such conversation."""
        try:
            record, _, _ = self._three(tenant, conversation_id)
        except ValueError:
            return None  # not an id this gateway hands out
        raw = await self._strict(lambda: self._client.get(record), "read")
        if raw is None:
            return None
        data = json.loads(raw)
        return Conversation(conversation_id, int(data["created_at"]), dict(data["metadata"]))

    async def update(self, tenant: str, conversation_id: str, metadata: dict[str, str]) -> Conversation | None:
        """Replace the conversation's metadata; None when there is no such conversation."""
        current = await self.get(tenant, conversation_id)
        if current is None:
            return None
        record, _, _ = self._three(tenant, conversation_id)
        value = json.dumps({"created_at": current.created_at, "metadata": metadata})
        ttl_ms = int(self._config.ttl_s * 1000)
        # XX: a conversation deleted meanwhile stays deleted.
        updated = await self._strict(lambda: self._client.set(record, value, px=ttl_ms, xx=True), "stored")
        return Conversation(conversation_id, current.created_at, dict(metadata)) if updated else None

    async def delete(self, tenant: str, conversation_id: str) -> bool:
        """Forget the conversation and its items; False when there was none."""
        try:
            keys = self._three(tenant, conversation_id)
        except ValueError:
            return False
        existed = await self._strict(lambda: self._client.exists(keys[0]), "read")
        await self._strict(lambda: self._client.delete(*keys), "changed")
        return bool(existed)

    async def append(
        self, tenant: str, conversation_id: str, items: Sequence[dict[str, Any]], *, within_limit: bool = True
    ) -> int:
        """Add ``items`` (each with an ``id``) after the others; returns the item count.

        Raises :class:`NotFoundError` when there is no such conversation, and
        :class:`InvalidRequestError` when it would (``within_limit``) hold more than
        ``max_items``, or an item is over ``max_item_bytes``. A response's
        turn is added past the limit (``within_limit=False``): its room was checked before the
        answer was paid for, and its output may hold more items than foreseen.
        """
        limit = self._config.max_items if within_limit else 2**53
        args: list[str | int] = [int(self._config.ttl_s * 1000), limit]
        for item in items:
            text = json.dumps(item, separators=(",", ":"), ensure_ascii=False)
            if len(text.encode()) > self._config.max_item_bytes:
                raise InvalidRequestError(
                    f"item {item['id']} is over {self._config.max_item_bytes} bytes", param="items"
                )
            args += [str(item["id"]), text]
        missing = NotFoundError(f"Conversation with id '{conversation_id}' not found.", param="conversation_id")
        try:
            keys = list(self._three(tenant, conversation_id))
        except ValueError:
            raise missing from None  # not an id this gateway hands out
        # The script checks the conversation exists: no read before it.
        count = int(await self._strict(lambda: self._append(keys=keys, args=args), "changed"))
        if count == -1:
            raise missing
        if count == -2:
            raise InvalidRequestError(
                f"conversation {conversation_id} would hold more than {self._config.max_items} items",
                param="conversation",
            )
        return count

    async def items(
        self, tenant: str, conversation_id: str, *, limit: int, order: str = "desc", after: str | None = None
    ) -> ItemPage:
        """A page of items: ``limit`` of them, newest first (``desc``) or oldest first (``asc``),
        after the item ``after`` (an id; an unknown one gives an empty page)."""
        _, stream, index = self._three(tenant, conversation_id)
        ascending = order == "asc"
        start = "-" if ascending else "+"
        if after is not None:
            entry = await self._strict(lambda: self._client.hget(index, after), "read")
            if entry is None:
                return ItemPage([], False)
            start = "(" + (entry.decode() if isinstance(entry, bytes) else entry)
        if ascending:
            raw = await self._range(lambda: self._client.xrange(stream, min=start, max="+", count=limit + 1))
        else:
            raw = await self._range(lambda: self._client.xrevrange(stream, max=start, min="-", count=limit + 1))
        items = [json.loads(fields[b"i"]) for _, fields in raw]
        return ItemPage(items[:limit], len(items) > limit)

    async def all_items(self, tenant: str, conversation_id: str) -> list[dict[str, Any]]:
        """Every item, oldest first (a response's history)."""
        _, stream, _ = self._three(tenant, conversation_id)
        raw = await self._range(lambda: self._client.xrange(stream, min="-", max="+"))
        return [json.loads(fields[b"i"]) for _, fields in raw]

    async def item(self, tenant: str, conversation_id: str, item_id: str) -> dict[str, Any] | None:
        """One item by id, or None."""
        _, stream, index = self._three(tenant, conversation_id)
        entry = await self._strict(lambda: self._client.hget(index, item_id), "read")
        if entry is None:
            return None
        raw = await self._range(lambda: self._client.xrange(stream, min=entry, max=entry))
        return json.loads(raw[0][1][b"i"]) if raw else None

    async def delete_item(self, tenant: str, conversation_id: str, item_id: str) -> bool:
        """Remove one item; False when the conversation has no such item."""
        _, stream, index = self._three(tenant, conversation_id)
        entry = await self._strict(lambda: self._client.hget(index, item_id), "read")
        if entry is None:
            return False
        await self._strict(lambda: self._client.xdel(stream, entry), "changed")
        await self._strict(lambda: self._client.hdel(index, item_id), "changed")
        return True

    async def _range(self, call: Callable[[], Awaitable[Any]]) -> list[tuple[bytes, dict[bytes, bytes]]]:
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await self._strict(call, "read") or []
        return entries

    async def _strict(self, call: Callable[[], Awaitable[T]], action: str) -> T:
        # Reads answer 503 when Redis is away: "not found" would be a lie.
        unavailable = StateUnavailableError(f"conversations cannot be {action} right now", retry_after=1)
        return await self._health.guarded(call, unavailable)
