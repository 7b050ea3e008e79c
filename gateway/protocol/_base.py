"""Base models shared by the wire protocol's modules."""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

__all__ = ["OmitNone", "Tolerant", "finite", "refuse_other_types"]


class Tolerant(BaseModel):
    """A request model: unknown fields pass (OpenAI clients send fields we do not model, such
    as ``metadata``) and key the response cache, but are not sent upstream; NaN and
    infinities are refused."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class OmitNone(BaseModel):
    """A stream model whose unset (``None``) fields are left out, as OpenAI's stream leaves them."""

    @model_serializer(mode="wrap")
    def _drop_none(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if v is not None}


def refuse_other_types(value: Any, allowed: Collection[str], what: str, only: str) -> Any:
    """A before-validator's body: refuse, by name, a list element whose ``type`` is not ``allowed``.

    Without it, such an element (an image part, a built-in tool) fails every branch of a
    union and the client reads "Input should be a valid string", which hides the reason.
    """
    if isinstance(value, list):
        for element in value:
            kind = element.get("type") if isinstance(element, dict) else None
            if isinstance(kind, str) and kind not in allowed:
                raise ValueError(f"{what} of type {kind!r} are not supported; only {only} are")
    return value


def finite(value: float | None) -> float | None:
    """A field validator's body: refuse NaN and infinities."""
    if value is not None and not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value
