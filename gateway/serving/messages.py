"""How a request's messages reach the engines (and the router, which reads these with
``router_models.conversation.turn_from_message``)."""

from __future__ import annotations

from typing import Any

from gateway.protocol import ChatMessage

__all__ = ["engine_message"]


def engine_message(message: ChatMessage) -> dict[str, Any]:
    """A message as engines take it: joined text, ``developer`` as ``system``, tool fields kept."""
    engine: dict[str, Any] = {"role": "system" if message.role == "developer" else message.role}
    if message.tool_calls:
        engine["content"] = message.text() if message.content is not None else None
        engine["tool_calls"] = [call.model_dump(exclude_none=True) for call in message.tool_calls]
    else:
        engine["content"] = message.text()
    if message.role == "tool":
        engine["tool_call_id"] = message.tool_call_id
    return engine
