"""Everything ``/v1/conversations`` does, free of any HTTP framework, and what a response
created with ``conversation`` takes from and gives to its conversation.

A conversation is a list of Responses API items kept in Redis (:class:`~gateway.state.ConversationStore`):
created with up to 20 items and metadata, listed, read, added to and pruned item by item. A
response created with ``conversation: "conv_..."`` is served after all its items (as with
``previous_response_id``, which it excludes), and its input and output items are added once it
has an answer; a failed response adds nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.errors import InvalidRequestError, NotFoundError
from gateway.protocol.conversations import (
    ConversationCreateRequest,
    ConversationItemsRequest,
    ConversationUpdateRequest,
)
from gateway.protocol.parsing import parse_body
from gateway.serving.access import AccessControl
from gateway.serving.endpoint import TENANT_HEADER
from gateway.serving.responses_input import history_messages
from gateway.serving.responses_output import listed_input_items
from gateway.serving.responses_results import PageQuery, ServedRequest
from gateway.state import ConversationStore

__all__ = ["ConversationHistory", "ConversationsEndpoint"]

logger = logging.getLogger(__name__)


def _not_found(conversation_id: str, param: str = "conversation_id") -> NotFoundError:
    return NotFoundError(f"Conversation with id '{conversation_id}' not found.", param=param)


def _item_list(items: Sequence[dict[str, Any]], *, has_more: bool = False) -> dict[str, Any]:
    return {
        "object": "list",
        "data": list(items),
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }


class ConversationsEndpoint:
    """``/v1/conversations`` over the conversation store."""

    def __init__(self, access: AccessControl, store: ConversationStore | None) -> None:
        self._access = access
        self._store = store

    async def create(self, body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        """``POST /v1/conversations``: a new conversation, with its first items."""
        tenant, store = await self._caller(headers)
        request = parse_body(body, ConversationCreateRequest)
        items = listed_input_items(request.items or [])
        conversation = await store.create(tenant, f"conv_{uuid.uuid4().hex}", request.metadata or {}, items)
        return conversation.as_object()

    async def retrieve(self, conversation_id: str, headers: Mapping[str, str]) -> dict[str, Any]:
        """``GET /v1/conversations/{id}``."""
        tenant, store = await self._caller(headers)
        conversation = await store.get(tenant, conversation_id)
        if conversation is None:
            raise _not_found(conversation_id)
        return conversation.as_object()

    async def update(self, conversation_id: str, body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        """``POST /v1/conversations/{id}``: replace its metadata."""
        tenant, store = await self._caller(headers)
        request = parse_body(body, ConversationUpdateRequest)
        conversation = await store.update(tenant, conversation_id, request.metadata)
        if conversation is None:
            raise _not_found(conversation_id)
        return conversation.as_object()

    async def delete(self, conversation_id: str, headers: Mapping[str, str]) -> dict[str, Any]:
        """``DELETE /v1/conversations/{id}``: forget it and its items."""
        tenant, store = await self._caller(headers)
        if not await store.delete(tenant, conversation_id):
            raise _not_found(conversation_id)
        return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}

    async def add_items(self, conversation_id: str, body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        """``POST /v1/conversations/{id}/items``: add up to 20 items after the others."""
        tenant, store = await self._caller(headers)
        request = parse_body(body, ConversationItemsRequest)
        items = listed_input_items(request.items)
        await store.append(tenant, conversation_id, items)
        return _item_list(items)

    async def list_items(
        self, conversation_id: str, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> dict[str, Any]:
        """``GET /v1/conversations/{id}/items``: a page of items (``limit``, ``order``, ``after``)."""
        tenant, store = await self._caller(headers)
        page = PageQuery.of(query)
        if await store.get(tenant, conversation_id) is None:
            raise _not_found(conversation_id)
        found = await store.items(tenant, conversation_id, limit=page.limit, order=page.order, after=page.after)
        return _item_list(found.items, has_more=found.has_more)

    async def get_item(self, conversation_id: str, item_id: str, headers: Mapping[str, str]) -> dict[str, Any]:
        """``GET /v1/conversations/{id}/items/{item_id}``."""
        tenant, store = await self._caller(headers)
        if await store.get(tenant, conversation_id) is None:
            raise _not_found(conversation_id)
        item = await store.item(tenant, conversation_id, item_id)
        if item is None:
            raise NotFoundError(f"Item with id '{item_id}' not found.", param="item_id")
        return item

    async def delete_item(self, conversation_id: str, item_id: str, headers: Mapping[str, str]) -> dict[str, Any]:
        """``DELETE /v1/conversations/{id}/items/{item_id}``: the conversation, without the item."""
        tenant, store = await self._caller(headers)
        conversation = await store.get(tenant, conversation_id)
        if conversation is None:
            raise _not_found(conversation_id)
        if not await store.delete_item(tenant, conversation_id, item_id):
            raise NotFoundError(f"Item with id '{item_id}' not found.", param="item_id")
        return conversation.as_object()

    async def _caller(self, headers: Mapping[str, str]) -> tuple[str, ConversationStore]:
        caller = await self._access.authenticate(headers.get("authorization"), headers.get(TENANT_HEADER))
        if self._store is None:
            raise InvalidRequestError("conversations are kept in Redis, and this gateway runs without it")
        return caller.tenant, self._store


class ConversationHistory:
    """What a response created with ``conversation`` reads before it and adds after it."""

    def __init__(self, store: ConversationStore | None) -> None:
        self._store = store

    async def messages(self, tenant: str, conversation_id: str, adding: int) -> list[dict[str, Any]]:
        """The conversation's items as chat messages, to serve a response after them; a 400 when
        it is unknown, or when ``adding`` more items would take it past its limit (refused
        before the answer is paid for)."""
        if self._store is None:
            raise InvalidRequestError(
                "conversations are kept in Redis, and this gateway runs without it", param="conversation"
            )
        if await self._store.get(tenant, conversation_id) is None:
            raise _not_found(conversation_id, param="conversation")
        items = await self._store.all_items(tenant, conversation_id)
        if len(items) + adding > self._store.max_items:
            raise InvalidRequestError(
                f"conversation {conversation_id} holds {len(items)} items, and this response would take it past "
                f"its limit of {self._store.max_items}",
                param="conversation",
            )
        return history_messages(items)

    async def record(
        self,
        tenant: str,
        conversation_id: str,
        input_items: Sequence[dict[str, Any]],
        output_items: Sequence[dict[str, Any]],
    ) -> None:
        """Add a finished response's input and output items after the conversation's others."""
        if self._store is None:
            return
        try:
            await self._store.append(tenant, conversation_id, [*input_items, *output_items], within_limit=False)
        except Exception:
            # The answer is whole and paid for: the client gets it; the conversation lacks the turn.
            logger.exception("conversation %s: a response's items could not be added", conversation_id)

    async def add_turn(self, context: ServedRequest, output_items: Sequence[dict[str, Any]]) -> None:
        """Add a finished response's input and output items to its conversation, if it has one."""
        if context.request.conversation is not None:
            inputs = listed_input_items(context.request.input)
            await self.record(context.caller.tenant, context.request.conversation, inputs, output_items)
