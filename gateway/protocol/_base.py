"""Base models shared by the wire protocol's modules."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

__all__ = ["OmitNone", "Tolerant"]


class Tolerant(BaseModel):
    """A request model: unknown fields pass (OpenAI clients send fields we do not model, such
    as ``name``), and they travel upstream as sent; NaN and infinities are refused."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class OmitNone(BaseModel):
    """A stream model whose unset (``None``) fields are left out, as OpenAI's stream leaves them."""

    @model_serializer(mode="wrap")
    def _drop_none(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if v is not None}
