"""Turning raw request bodies into validated protocol models, with OpenAI-style errors."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gateway.errors import InvalidRequestError

__all__ = ["parse_body"]

ModelT = TypeVar("ModelT", bound=BaseModel)


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN/Infinity by default; OpenAI's API (and JSON) does not.
    raise ValueError(f"{name} is not valid JSON")


def _error_param(loc: tuple[int | str, ...]) -> str | None:
    if not loc:
        return None
    param = str(loc[0])
    for part in loc[1:]:
        if isinstance(part, int):
            param += f"[{part}]"
        elif not part.startswith(("function-", "list[", "str", "int", "float", "bool", "literal[")):
            # pydantic adds union-branch names to locations; they mean nothing to a client.
            param += f".{part}"
    return param


def parse_body(body: bytes, model: type[ModelT]) -> ModelT:
    """Decode JSON and validate it as ``model``; any problem is an :class:`InvalidRequestError`."""
    if not body.strip():
        raise InvalidRequestError("the request body is empty; expected a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequestError("the request body is not valid UTF-8") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        message = str(exc) if isinstance(exc, ValueError) else "too deeply nested"
        raise InvalidRequestError(f"the request body is not valid JSON: {message}") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = _error_param(tuple(first["loc"]))
        where = f"'{param}': " if param else ""
        more = f" (and {exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
        raise InvalidRequestError(f"{where}{first['msg']}{more}", param=param, code="invalid_value") from None
    except RecursionError:
        raise InvalidRequestError("the request body is too deeply nested") from None
