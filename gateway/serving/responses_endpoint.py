"""Everything ``/v1/responses`` does, free of any HTTP framework.

A Responses API request is served by the chat-completion pipeline
(:class:`~gateway.serving.endpoint.ChatEndpoint`): authentication, rate limits, the cache,
routing, failover, cost accounting and telemetry are the same code, so a response costs
and routes exactly as the equivalent chat completion. This module translates on the way
in (:mod:`gateway.serving.responses_input`) and out
(:mod:`gateway.serving.responses_output`), and keeps responses in Redis for
``GET``/``DELETE /v1/responses/{id}`` and ``previous_response_id``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import (
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    ServiceUnavailableError,
    UnsupportedParameterError,
)
from gateway.protocol import ChatCompletionRequest
from gateway.protocol.parsing import parse_body
from gateway.protocol.responses import ResponsesRequest, reject_unsupported_responses
from gateway.serving.access import AccessControl, Caller
from gateway.serving.background_runs import BackgroundRuns
from gateway.serving.chat import HEADER_DROPPED_PARAMS, HEADER_MODEL, ChatResult
from gateway.serving.endpoint import TENANT_HEADER, ChatEndpoint
from gateway.serving.param_names import ParamNames
from gateway.serving.responses_input import ChatForm, chat_form
from gateway.serving.responses_output import (
    ResponseEventStream,
    ResponseShell,
    assistant_turn,
    input_item_list,
    listed_input_items,
    response_id,
)
from gateway.state import ResponseStore, StoredResponse

__all__ = ["ResponsesEndpoint", "ResponsesResult", "ResponsesStream"]

logger = logging.getLogger(__name__)

#: Chat parameter names in errors from the shared pipeline, and what a Responses client sent.
_in_responses_terms = ParamNames(
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
class _Served:
    """What the request reader learnt, for writing the answer."""

    request: ResponsesRequest
    form: ChatForm
    caller: Caller


class ResponsesEndpoint:
    """The Responses API's logic over the chat pipeline and the response store."""

    def __init__(
        self,
        chat: ChatEndpoint,
        access: AccessControl,
        store: ResponseStore | None = None,
        runs: BackgroundRuns | None = None,
    ) -> None:
        self._chat = chat
        self._access = access
        self._store = store
        self._runs = runs

    async def close(self) -> None:
        """Stop the background responses this replica runs (each is recorded as failed)."""
        if self._runs is not None:
            await self._runs.close()

    async def create(self, body: bytes, headers: Mapping[str, str]) -> ResponsesResult | ResponsesStream:
        """``POST /v1/responses``; every failure is a :class:`GatewayError`."""
        if _asks_background(body):
            return await self._start_background(body, headers)
        served: list[_Served] = []

        async def read(raw: bytes, caller: Caller) -> ChatCompletionRequest:
            request = parse_body(raw, ResponsesRequest)
            reject_unsupported_responses(request)
            history = await self._history(caller.tenant, request.previous_response_id)
            form = chat_form(request, history)
            served.append(_Served(request, form, caller))
            return form.request

        try:
            result = await self._chat.handle(body, headers, read=read)
        except GatewayError as error:
            raise _in_responses_terms(error) from None
        context = served[0]
        stores = context.request.stores() and self._store is not None
        if isinstance(result, ChatResult):
            shell = ResponseShell(
                id=response_id(result.response.id),
                model=result.response.model,
                request=context.request,
                store=stores,
                dropped=_dropped_params(result.headers),
            )
            response, items = shell.from_chat(result.response)
            if stores:
                response["store"] = await self._keep(context, response, items)
            return ResponsesResult(body=response, headers=result.headers)
        shell = ResponseShell(
            id=response_id(result.request_id),
            model=result.headers.get(HEADER_MODEL, context.request.model),
            request=context.request,
            store=stores,
            dropped=_dropped_params(result.headers),
        )

        async def finished(response: dict[str, Any], items: list[dict[str, Any]]) -> bool:
            return await self._keep(context, response, items) if stores else False

        stream = ResponseEventStream(shell, on_finished=finished)
        return ResponsesStream(events=stream.events(result.chunks), headers=result.headers)

    async def retrieve(
        self, response_id: str, headers: Mapping[str, str], query: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """``GET /v1/responses/{id}``: a stored response of the caller's tenant (a background one
        whose replica stopped reads as failed). Replaying it as a stream (``?stream=true``) is
        refused rather than answered with JSON the client would not parse."""
        caller = await self._authenticate(headers)
        if (query or {}).get("stream", "false").lower() not in ("false", "0", ""):
            raise UnsupportedParameterError(
                "streaming a stored response is not supported; GET it without stream", param="stream"
            )
        record = await self._store.get(caller.tenant, response_id) if self._store is not None else None
        if record is None:
            raise _not_found(response_id)
        if _running(record.response):
            return await self._unless_orphaned(caller.tenant, record)
        return record.response

    async def cancel(self, response_id: str, headers: Mapping[str, str]) -> dict[str, Any]:
        """``POST /v1/responses/{id}/cancel``: stop a background response (on whichever replica
        runs it); one that has ended is returned as it is."""
        caller = await self._authenticate(headers)
        record = await self._store.get(caller.tenant, response_id) if self._store is not None else None
        if record is None:
            raise _not_found(response_id)
        if not record.response.get("background"):
            raise InvalidRequestError(
                "Only responses created with background: true can be cancelled.", param="response_id"
            )
        if not _running(record.response):
            return record.response
        assert self._store is not None and self._runs is not None
        cancelled = {**record.response, "status": "cancelled"}
        if await self._store.end_background(
            caller.tenant, StoredResponse(cancelled, record.conversation, record.input_items), cancelled=True
        ):
            self._runs.cancel_here(response_id)
            return cancelled
        ended = await self._store.get(caller.tenant, response_id)  # it ended first
        return ended.response if ended is not None else cancelled

    async def _start_background(self, body: bytes, headers: Mapping[str, str]) -> ResponsesResult:
        """Check and keep a ``background`` request, answer ``queued`` and run it on (a refusal
        counts as a failed request, as the pipeline counts its own)."""
        caller: Caller | None = None
        request: ResponsesRequest | None = None
        try:
            caller = await self._authenticate(headers)
            request = parse_body(body, ResponsesRequest)
            return await self._queue(headers, caller, request)
        except GatewayError as error:
            self._chat.refused(error, headers, caller, request.model if request is not None else None)
            raise

    async def _queue(self, headers: Mapping[str, str], caller: Caller, request: ResponsesRequest) -> ResponsesResult:
        if self._store is None or self._runs is None:
            raise InvalidRequestError(
                "background responses are kept in Redis, and this gateway runs without it", param="background"
            )
        if request.stream:
            raise UnsupportedParameterError(
                "streaming a background response is not supported; poll GET /v1/responses/{id}", param="stream"
            )
        if request.store is False:
            raise InvalidRequestError("a background response is kept: store must not be false", param="store")
        reject_unsupported_responses(request)
        self._chat.check_model(request.model)  # a 404 now, not a failed response later
        context = _Served(
            request, chat_form(request, await self._history(caller.tenant, request.previous_response_id)), caller
        )
        shell = ResponseShell(
            id=f"resp_{uuid.uuid4().hex}", model=request.model, request=request, store=True, background=True
        )
        queued = shell.build([], status="queued")
        listed = listed_input_items(request.input)
        await self._store.start_background(
            caller.tenant, StoredResponse(queued, context.form.conversation, listed), self._runs.lease_s
        )
        stopped = ServiceUnavailableError("the gateway stopped before this response finished; create it again")
        self._runs.start(
            caller.tenant,
            shell.id,
            self._run_in_background(headers, shell, context),
            on_stop=lambda: self._end_failed(shell, context, stopped),
        )
        return ResponsesResult(body=queued)

    async def _run_in_background(self, headers: Mapping[str, str], shell: ResponseShell, context: _Served) -> None:
        async def read(_: bytes, __: Caller) -> ChatCompletionRequest:
            return context.form.request  # checked before the response was queued

        try:
            result = await self._chat.handle(b"", headers, read=read)
        except GatewayError as error:
            await self._end_failed(shell, context, _in_responses_terms(error))
            return
        assert isinstance(result, ChatResult)  # streaming was refused
        final = dataclasses.replace(shell, model=result.response.model, dropped=_dropped_params(result.headers))
        response, items = final.from_chat(result.response)
        conversation = [*context.form.conversation, assistant_turn(items)]
        assert self._store is not None
        await self._store.end_background(
            context.caller.tenant, StoredResponse(response, conversation, listed_input_items(context.request.input))
        )

    async def _end_failed(self, shell: ResponseShell, context: _Served, error: GatewayError) -> None:
        assert self._store is not None
        failed = shell.build([], status="failed", error=error)
        record = StoredResponse(failed, context.form.conversation, listed_input_items(context.request.input))
        await self._store.end_background(context.caller.tenant, record)

    async def _unless_orphaned(self, tenant: str, record: StoredResponse) -> dict[str, Any]:
        """A running background response, or failed when no replica runs it any more."""
        assert self._store is not None
        response_id = str(record.response["id"])
        if await self._store.lease_held(tenant, response_id):
            return record.response
        error = {
            "code": "server_error",
            "message": "the gateway replica running this response stopped; create it again",
        }
        failed = {**record.response, "status": "failed", "error": error}
        if await self._store.end_background(tenant, StoredResponse(failed, record.conversation, record.input_items)):
            return failed
        ended = await self._store.get(tenant, response_id)
        return ended.response if ended is not None else failed

    async def input_items(
        self, response_id: str, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> dict[str, Any]:
        """``GET /v1/responses/{id}/input_items``: the items the response's own request sent
        (not those of the responses it continues), as a cursor list: ``limit`` (1-100, 20),
        ``order`` (``desc``, the default, or ``asc``) and ``after`` (an item id)."""
        caller = await self._authenticate(headers)
        limit = _limit(query.get("limit"))
        order = query.get("order") or "desc"
        if order not in ("asc", "desc"):
            raise InvalidRequestError("order must be 'asc' or 'desc'", param="order", code="invalid_value")
        record = await self._store.get(caller.tenant, response_id) if self._store is not None else None
        if record is None:
            raise _not_found(response_id)
        return input_item_list(record.input_items, limit=limit, order=order, after=query.get("after") or None)

    async def delete(self, response_id: str, headers: Mapping[str, str]) -> dict[str, Any]:
        """``DELETE /v1/responses/{id}``: forget a stored response of the caller's tenant."""
        caller = await self._authenticate(headers)
        deleted = await self._store.delete(caller.tenant, response_id) if self._store is not None else False
        if not deleted:
            raise _not_found(response_id)
        return {"id": response_id, "object": "response.deleted", "deleted": True}

    async def _authenticate(self, headers: Mapping[str, str]) -> Caller:
        return await self._access.authenticate(headers.get("authorization"), headers.get(TENANT_HEADER))

    async def _history(self, tenant: str, previous_id: str | None) -> list[dict[str, Any]]:
        if previous_id is None:
            return []
        if self._store is None:
            raise InvalidRequestError(
                "previous_response_id needs stored responses, and this gateway runs without Redis",
                param="previous_response_id",
            )
        record = await self._store.get(tenant, previous_id)
        if record is None:
            raise InvalidRequestError(
                f"Previous response with id '{previous_id}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        if _running(record.response):
            raise InvalidRequestError(
                f"Previous response with id '{previous_id}' has not finished yet.", param="previous_response_id"
            )
        return record.conversation

    async def _keep(self, context: _Served, response: dict[str, Any], items: list[dict[str, Any]]) -> bool:
        assert self._store is not None
        conversation = [*context.form.conversation, assistant_turn(items)]
        listed = listed_input_items(context.request.input)
        try:
            return await self._store.put(context.caller.tenant, StoredResponse(response, conversation, listed))
        except Exception:
            # The answer is whole and paid for: the client gets it, only not kept.
            logger.exception("response %s could not be stored", response.get("id"))
            return False


def _limit(raw: str | None) -> int:
    if raw is None:
        return 20
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise InvalidRequestError("limit must be an integer from 1 to 100", param="limit", code="invalid_value")
    return limit


def _not_found(response_id: str) -> NotFoundError:
    return NotFoundError(f"Response with id '{response_id}' not found.", param="response_id")


def _dropped_params(headers: Mapping[str, str]) -> frozenset[str]:
    """The model-specific parameters the answering tier was not sent (its header, parsed)."""
    return frozenset(filter(None, headers.get(HEADER_DROPPED_PARAMS, "").split(",")))


def _asks_background(body: bytes) -> bool:
    # Most bodies never mention it; the rest are parsed once more here.
    if b'"background"' not in body:
        return False
    try:
        data = json.loads(body)
    except ValueError:
        return False  # the pipeline answers the malformed body
    return isinstance(data, dict) and data.get("background") is True


def _running(response: Mapping[str, Any]) -> bool:
    return bool(response.get("background")) and response.get("status") in ("queued", "in_progress")
