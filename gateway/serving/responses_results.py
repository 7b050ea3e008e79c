"""What the ``/v1/responses`` logic answers with, and the helpers its modules share."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import InvalidRequestError, NotFoundError
from gateway.protocol.responses import ResponsesRequest
from gateway.serving.access import Caller
from gateway.serving.chat import HEADER_DROPPED_PARAMS
from gateway.serving.param_names import ParamNames
from gateway.serving.responses_input import ChatForm

__all__ = [
    "PageQuery",
    "ResponsesResult",
    "ResponsesStream",
    "ServedRequest",
    "dropped_params",
    "in_responses_terms",
    "is_running",
    "not_found",
]

#: Chat parameter names in errors from the shared pipeline, and what a Responses client sent.
in_responses_terms = ParamNames(
    {
        "max_completion_tokens": "max_output_tokens",
        "response_format": "text.format",
        "messages": "input",
        "reasoning_effort": "reasoning.effort",
        "verbosity": "text.verbosity",
    }
)


@dataclass
class ResponsesResult:
    """A finished response object and its headers."""

    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ResponsesStream:
    """A started response stream: SSE events and the headers."""

    events: AsyncIterator[bytes]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ServedRequest:
    """A Responses request as the pipeline serves it: what was sent, its chat form, and who sent it."""

    request: ResponsesRequest
    form: ChatForm
    caller: Caller


def not_found(response_id: str) -> NotFoundError:
    """The 404 for a response the caller's tenant does not have."""
    return NotFoundError(f"Response with id '{response_id}' not found.", param="response_id")


def dropped_params(headers: Mapping[str, str]) -> frozenset[str]:
    """The model-specific parameters the answering tier was not sent (its header, parsed)."""
    return frozenset(filter(None, headers.get(HEADER_DROPPED_PARAMS, "").split(",")))


def is_running(response: Mapping[str, Any]) -> bool:
    """Whether ``response`` is a background response that has not ended."""
    return bool(response.get("background")) and response.get("status") in ("queued", "in_progress")


@dataclass(frozen=True)
class PageQuery:
    """A cursor list's query: ``limit`` (1-100, 20), ``order`` (``desc``, the default, or
    ``asc``) and ``after`` (an item id)."""

    limit: int = 20
    order: str = "desc"
    after: str | None = None

    @classmethod
    def of(cls, query: Mapping[str, str]) -> PageQuery:
        """The query's page, or a 400 naming the bad parameter."""
        raw = query.get("limit")
        try:
            limit = 20 if raw is None else int(raw)
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            raise InvalidRequestError("limit must be an integer from 1 to 100", param="limit", code="invalid_value")
        order = query.get("order") or "desc"
        if order not in ("asc", "desc"):
            raise InvalidRequestError("order must be 'asc' or 'desc'", param="order", code="invalid_value")
        return cls(limit, order, query.get("after") or None)
