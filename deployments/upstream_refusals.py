"""Upstream refusals that are the client's fault, shared by both hosted transports.

A hosted model's 400 is normally the gateway's problem (it built the request), so it stays a
502 that may fail over. A refused ``response_format`` or tool definition is different: the
schema is the client's, passed through as sent, and providers accept narrower JSON Schema
dialects than the gateway checks for (OpenAI's strict mode, say). The client gets a 400
naming the field, with the provider's reason, and no other tier is tried: whichever tier
answered, the schema would still be the client's to fix.
"""

from __future__ import annotations

from gateway.errors import InvalidRequestError

__all__ = ["CLIENT_FIELDS", "refused_client_field"]

#: How much of the provider's message reaches the client.
_MAX_REASON_CHARS = 500
#: Request fields passed upstream as the client sent them, in the order a message is matched
#: ("tool_choice" before "tools", which it contains).
CLIENT_FIELDS = ("response_format", "tool_choice", "tools")


def refused_client_field(target: str, status: int | None, message: str) -> InvalidRequestError | None:
    """A 400 for the client when the upstream's 400 ``message`` is about a field it sent as is."""
    if status != 400:
        return None
    field = next((name for name in CLIENT_FIELDS if name in message), None)
    if field is None:
        return None
    reason = " ".join(message.split())[:_MAX_REASON_CHARS]
    return InvalidRequestError(f"{target} refused the {field}: {reason}", param=field, code="invalid_value")
