"""``/v1/conversations`` bodies: create a conversation, change its metadata, add items.

Items are the Responses API's input items (messages, ``function_call`` and
``function_call_output``), checked as ``/v1/responses`` checks them; OpenAI takes at most 20
in one request, and metadata of at most 16 keys.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator

from gateway.protocol._base import Tolerant
from gateway.protocol.responses import InputItem, known_input_items

__all__ = ["ConversationCreateRequest", "ConversationItemsRequest", "ConversationUpdateRequest", "Metadata"]

#: OpenAI's metadata: up to 16 keys of up to 64 characters, values of up to 512.
Metadata = Annotated[
    dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]], Field(max_length=16)
]

#: Items one request adds at most (OpenAI's limit).
MAX_ITEMS_PER_REQUEST = 20


class ConversationCreateRequest(Tolerant):
    """``POST /v1/conversations`` body."""

    items: Annotated[list[InputItem], Field(max_length=MAX_ITEMS_PER_REQUEST)] | None = None
    metadata: Metadata | None = None

    @field_validator("items", mode="before")
    @classmethod
    def _known(cls, value: Any) -> Any:
        return known_input_items(value)


class ConversationUpdateRequest(Tolerant):
    """``POST /v1/conversations/{id}`` body: the new metadata."""

    metadata: Metadata


class ConversationItemsRequest(Tolerant):
    """``POST /v1/conversations/{id}/items`` body."""

    items: Annotated[list[InputItem], Field(min_length=1, max_length=MAX_ITEMS_PER_REQUEST)]

    @field_validator("items", mode="before")
    @classmethod
    def _known(cls, value: Any) -> Any:
        return known_input_items(value)
