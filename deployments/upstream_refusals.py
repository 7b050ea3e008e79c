"""Upstream refusals that are the client's fault, shared by both hosted transports.

A hosted model's 400 is normally the gateway's problem (it built the request), so it stays a
502 that may fail over. A refused ``response_format`` is different: the schema is the
client's, passed through as sent, and providers accept narrower JSON Schema dialects than
the gateway checks for (OpenAI's strict mode, say). The client gets a 400 naming the field,
with the provider's reason, and no other tier is tried: whichever tier answered, the schema
would still be the client's to fix.
"""

from __future__ import annotations

from gateway.errors import InvalidRequestError

__all__ = ["refused_response_format"]

#: How much of the provider's message reaches the client.
_MAX_REASON_CHARS = 500


def refused_response_format(target: str, status: int | None, message: str) -> InvalidRequestError | None:
    """A 400 for the client when the upstream's 400 ``message`` is about ``response_format``."""
    if status != 400 or "response_format" not in message:
        return None
    reason = " ".join(message.split())[:_MAX_REASON_CHARS]
    return InvalidRequestError(
        f"{target} refused the response_format: {reason}", param="response_format", code="invalid_value"
    )
