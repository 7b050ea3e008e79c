"""Upstream refusals that are the client's fault, shared by both hosted transports.

A hosted model's 400 is normally the gateway's problem (it built the request), so it stays a
502 that may fail over. A refused ``response_format`` or tool definition is different: the
schema is the client's, passed through as sent, and providers accept narrower JSON Schema
dialects than the gateway checks for (OpenAI's strict mode, say). The client gets a 400
naming the field, with the provider's reason, and no other tier is tried: whichever tier
answered, the schema would still be the client's to fix. A refused sampling or
model-specific field (``temperature`` to a reasoning model, a ``reasoning_effort`` value it
does not know) is a 400 naming it too, for a request that named the model; a routed request
moves to another tier, which takes it (or is not sent a model-specific field it lacks).
"""

from __future__ import annotations

from gateway.errors import InvalidRequestError, ModelRefusedParameterError

__all__ = ["CLIENT_FIELDS", "MODEL_DEPENDENT_FIELDS", "refused_client_field"]

#: How much of the provider's message reaches the client.
_MAX_REASON_CHARS = 500
#: Request fields passed upstream as the client sent them, in the order a message is matched
#: ("tool_choice" before "tools", which it contains).
CLIENT_FIELDS = ("response_format", "tool_choice", "tools")
#: Fields passed upstream as the client sent them that some models refuse (OpenAI's reasoning
#: models take no ``temperature`` or ``top_p``; not every reasoning model takes every
#: ``reasoning_effort``), matched in that order. Only names no prose uses: "stop", "seed" and
#: "n" would match messages about other things.
MODEL_DEPENDENT_FIELDS = (
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "top_logprobs",
    "logprobs",
    "logit_bias",
    "reasoning_effort",
    "verbosity",
)


def refused_client_field(target: str, status: int | None, message: str) -> InvalidRequestError | None:
    """A 400 for the client when the upstream's 400 ``message`` is about a field it sent as is.

    A refused schema or tool is the client's to fix whichever tier answers; a refused
    sampling or model-specific field is a :class:`ModelRefusedParameterError`, which a routed request may
    carry to another tier.
    """
    if status != 400:
        return None
    reason = " ".join(message.split())[:_MAX_REASON_CHARS]
    field = next((name for name in CLIENT_FIELDS if name in message), None)
    if field is not None:
        return InvalidRequestError(f"{target} refused the {field}: {reason}", param=field, code="invalid_value")
    field = next((name for name in MODEL_DEPENDENT_FIELDS if name in message), None)
    if field is not None:
        return ModelRefusedParameterError(f"{target} refused the {field}: {reason}", param=field)
    return None
