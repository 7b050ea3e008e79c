"""``GET /v1/models`` wire models."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

__all__ = ["ModelCard", "ModelList"]


class ModelCard(BaseModel):
    """One entry of the model list."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    """The ``list`` object returned by ``GET /v1/models``."""

    object: Literal["list"] = "list"
    data: list[ModelCard]
