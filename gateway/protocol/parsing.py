"""Turning raw request bodies into validated protocol models, with OpenAI-style errors."""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gateway.errors import InvalidRequestError

__all__ = ["MAX_JSON_DEPTH", "parse_body"]

ModelT = TypeVar("ModelT", bound=BaseModel)

# A valid UTF-8 body can still carry UTF-16 surrogates as JSON escapes ("\\ud800"). Paired
# ones decode to one character; a lone one is not text and cannot be encoded as UTF-8, so a
# tokenizer, Redis or an upstream would fail on it later (a 5xx for the client's mistake).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


#: Deepest nesting of arrays and objects a body may have. Chat requests need a handful of
#: levels (tool schemas a few dozen); pydantic refuses to serialise past 255, so a deeper
#: body that validates (in a tolerated unknown field) would only fail later, as a 500.
MAX_JSON_DEPTH = 128


def _nested_deeper_than(data: Any, limit: int) -> bool:
    # Iterative, so the check itself cannot hit the recursion limit.
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _has_lone_surrogate(data: Any) -> bool:
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN/Infinity by default; OpenAI's API (and JSON) does not.
    raise ValueError(f"{name} is not valid JSON")


# Union-branch names pydantic puts in error locations ("str", "list[TextContentPart]", ...).
# Matched whole or by bracket, so that fields such as "strict" or "stream" keep their name.
_UNION_SCALARS = frozenset({"str", "int", "float", "bool", "none"})
# "item:" tags tell the Responses API's input items apart (gateway.protocol.responses).
_UNION_PREFIXES = ("function-", "list[", "dict[", "literal[", "constrained-", "item:")


def _error_param(loc: tuple[int | str, ...]) -> str | None:
    if not loc:
        return None
    param = str(loc[0])
    for part in loc[1:]:
        if isinstance(part, int):
            param += f"[{part}]"
        elif part not in _UNION_SCALARS and not part.startswith(_UNION_PREFIXES):
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
    if _nested_deeper_than(data, MAX_JSON_DEPTH):
        raise InvalidRequestError(f"the request body is nested deeper than {MAX_JSON_DEPTH} levels")
    if _SURROGATE_ESCAPE.search(text) is not None and _has_lone_surrogate(data):
        raise InvalidRequestError(
            "the request body contains an unpaired UTF-16 surrogate escape (\\ud800-\\udfff), which is not text"
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        param = _error_param(tuple(errors[0]["loc"]))
        # A union field reports one error per branch, the type mismatches first ("stop": five
        # strings are not "a valid string"); a bound another branch broke says what is wrong.
        first = next(
            (e for e in errors if _error_param(tuple(e["loc"])) == param and not e["type"].endswith("_type")),
            errors[0],
        )
        where = f"'{param}': " if param else ""
        more = f" (and {exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
        raise InvalidRequestError(f"{where}{first['msg']}{more}", param=param, code="invalid_value") from None
    except RecursionError:
        raise InvalidRequestError("the request body is too deeply nested") from None
