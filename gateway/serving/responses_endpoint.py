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

import json
import logging
from collections.abc import Mapping
from typing import Any

from gateway.errors import GatewayError, InvalidRequestError
from gateway.protocol import ChatCompletionRequest
from gateway.protocol.parsing import parse_body
from gateway.protocol.responses import ResponsesRequest, reject_unsupported_responses
from gateway.serving.access import AccessControl, Caller
from gateway.serving.background_responses import BackgroundResponses
from gateway.serving.chat import HEADER_MODEL, ChatResult
from gateway.serving.conversations_endpoint import ConversationHistory
from gateway.serving.endpoint import TENANT_HEADER, ChatEndpoint
from gateway.serving.responses_input import chat_form
from gateway.serving.responses_output import (
    ResponseEventStream,
    ResponseShell,
    assistant_turn,
    input_item_list,
    listed_input_items,
    response_id,
)
from gateway.serving.responses_results import (
    PageQuery,
    ResponsesResult,
    ResponsesStream,
    ServedRequest,
    dropped_params,
    in_responses_terms,
    is_running,
    not_found,
)
from gateway.state import ResponseStore, StoredResponse

__all__ = ["ResponsesEndpoint", "ResponsesResult", "ResponsesStream"]

logger = logging.getLogger(__name__)


class ResponsesEndpoint:
    """The Responses API's logic over the chat pipeline and the response store."""

    def __init__(
        self,
        chat: ChatEndpoint,
        access: AccessControl,
        store: ResponseStore | None = None,
        background: BackgroundResponses | None = None,
        conversations: ConversationHistory | None = None,
    ) -> None:
        self._chat = chat
        self._access = access
        self._store = store
        self._background = background
        self._conversations = conversations or ConversationHistory(None)

    async def close(self) -> None:
        """Stop the background responses this replica runs (each is recorded as failed)."""
        if self._background is not None:
            await self._background.close()

    async def create(self, body: bytes, headers: Mapping[str, str]) -> ResponsesResult | ResponsesStream:
        """``POST /v1/responses``; every failure is a :class:`GatewayError`."""
        if _asks_background(body):
            return await self._start_background(body, headers)
        served: list[ServedRequest] = []

        async def read(raw: bytes, caller: Caller) -> ChatCompletionRequest:
            request = parse_body(raw, ResponsesRequest)
            reject_unsupported_responses(request)
            history = await self._history(caller.tenant, request)
            form = chat_form(request, history)
            served.append(ServedRequest(request, form, caller))
            return form.request

        try:
            result = await self._chat.handle(body, headers, read=read)
        except GatewayError as error:
            raise in_responses_terms(error) from None
        context = served[0]
        stores = context.request.stores() and self._store is not None
        if isinstance(result, ChatResult):
            shell = ResponseShell(
                id=response_id(result.response.id),
                model=result.response.model,
                request=context.request,
                store=stores,
                dropped=dropped_params(result.headers),
            )
            response, items = shell.from_chat(result.response)
            if stores:
                response["store"] = await self._keep(context, response, items)
            await self._conversations.add_turn(context, items)
            return ResponsesResult(body=response, headers=result.headers)
        shell = ResponseShell(
            id=response_id(result.request_id),
            model=result.headers.get(HEADER_MODEL, context.request.model),
            request=context.request,
            store=stores,
            dropped=dropped_params(result.headers),
        )

        async def finished(response: dict[str, Any], items: list[dict[str, Any]]) -> bool:
            await self._conversations.add_turn(context, items)
            return await self._keep(context, response, items) if stores else False

        stream = ResponseEventStream(shell, on_finished=finished)
        return ResponsesStream(events=stream.events(result.chunks), headers=result.headers)

    async def retrieve(
        self, response_id: str, headers: Mapping[str, str], query: Mapping[str, str] | None = None
    ) -> dict[str, Any] | ResponsesStream:
        """``GET /v1/responses/{id}``: a stored response of the caller's tenant (a background one
        whose replica stopped reads as failed). With ``?stream=true``, the events of a background
        response created with ``stream: true``, from after ``starting_after`` (a sequence
        number) on, live until its last; any other response is a 400 rather than JSON a stream
        reader would not parse."""
        caller = await self._authenticate(headers)
        query = query or {}
        streams = query.get("stream", "false").lower() not in ("false", "0", "")
        record = await self._store.get(caller.tenant, response_id) if self._store is not None else None
        if record is None:
            raise not_found(response_id)
        if streams:
            assert self._background is not None  # a record means Redis, and so background responses
            return await self._background.stream(caller.tenant, record, _starting_after(query.get("starting_after")))
        if is_running(record.response) and self._background is not None:
            return await self._background.settle(caller.tenant, record)
        return record.response

    async def cancel(self, response_id: str, headers: Mapping[str, str]) -> dict[str, Any]:
        """``POST /v1/responses/{id}/cancel``: stop a background response (on whichever replica
        runs it); one that has ended is returned as it is."""
        caller = await self._authenticate(headers)
        record = await self._store.get(caller.tenant, response_id) if self._store is not None else None
        if record is None:
            raise not_found(response_id)
        if not record.response.get("background"):
            raise InvalidRequestError(
                "Only responses created with background: true can be cancelled.", param="response_id"
            )
        if not is_running(record.response) or self._background is None:
            return record.response
        return await self._background.cancel(caller.tenant, record)

    async def _start_background(self, body: bytes, headers: Mapping[str, str]) -> ResponsesResult | ResponsesStream:
        """Check and admit a ``background`` request (so a rate limit's 429 comes now), keep it,
        answer ``queued`` and run it on. Every refusal counts as a failed request."""
        caller: Caller | None = None
        request: ResponsesRequest | None = None
        try:
            caller = await self._authenticate(headers)
            request = parse_body(body, ResponsesRequest)
            if self._background is None:
                raise InvalidRequestError(
                    "background responses are kept in Redis, and this gateway runs without it", param="background"
                )
            if request.store is False:
                raise InvalidRequestError("a background response is kept: store must not be false", param="store")
            reject_unsupported_responses(request)
            self._chat.check_model(request.model)  # a 404 now, not a failed response later
            context = ServedRequest(request, chat_form(request, await self._history(caller.tenant, request)), caller)
        except GatewayError as error:
            self._chat.refused(error, headers, caller, request.model if request is not None else None)
            raise

        async def read(_: bytes, __: Caller) -> ChatCompletionRequest:
            return context.form.request

        try:
            admitted = await self._chat.admit(b"", headers, read=read)  # counts its own refusals
        except GatewayError as error:
            raise in_responses_terms(error) from None
        try:
            return await self._background.queue(headers, context, admitted)
        except GatewayError as error:
            self._chat.refused(error, headers, caller, request.model)
            raise

    async def input_items(
        self, response_id: str, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> dict[str, Any]:
        """``GET /v1/responses/{id}/input_items``: the items the response's own request sent
        (not those of the responses it continues), as a cursor list: ``limit`` (1-100, 20),
        ``order`` (``desc``, the default, or ``asc``) and ``after`` (an item id)."""
        caller = await self._authenticate(headers)
        page = PageQuery.of(query)
        record = await self._store.get(caller.tenant, response_id) if self._store is not None else None
        if record is None:
            raise not_found(response_id)
        return input_item_list(record.input_items, limit=page.limit, order=page.order, after=page.after)

    async def delete(self, response_id: str, headers: Mapping[str, str]) -> dict[str, Any]:
        """``DELETE /v1/responses/{id}``: forget a stored response of the caller's tenant."""
        caller = await self._authenticate(headers)
        deleted = await self._store.delete(caller.tenant, response_id) if self._store is not None else False
        if not deleted:
            raise not_found(response_id)
        return {"id": response_id, "object": "response.deleted", "deleted": True}

    async def _authenticate(self, headers: Mapping[str, str]) -> Caller:
        return await self._access.authenticate(headers.get("authorization"), headers.get(TENANT_HEADER))

    async def _history(self, tenant: str, request: ResponsesRequest) -> list[dict[str, Any]]:
        previous_id = request.previous_response_id
        if request.conversation is not None:
            if previous_id is not None:
                raise InvalidRequestError(
                    "previous_response_id and conversation cannot both be set: a conversation holds its own history",
                    param="conversation",
                )
            return await self._conversations.messages(tenant, request.conversation, adding=len(request.input) + 1)
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
        if is_running(record.response):
            raise InvalidRequestError(
                f"Previous response with id '{previous_id}' has not finished yet.", param="previous_response_id"
            )
        return record.conversation

    async def _keep(self, context: ServedRequest, response: dict[str, Any], items: list[dict[str, Any]]) -> bool:
        assert self._store is not None
        conversation = [*context.form.conversation, assistant_turn(items)]
        listed = listed_input_items(context.request.input)
        try:
            return await self._store.put(context.caller.tenant, StoredResponse(response, conversation, listed))
        except Exception:
            # The answer is whole and paid for: the client gets it, only not kept.
            logger.exception("response %s could not be stored", response.get("id"))
            return False


def _starting_after(raw: str | None) -> int:
    if raw is None or raw == "":
        return -1
    try:
        after = int(raw)
    except ValueError:
        after = -2
    if after < -1:
        raise InvalidRequestError(
            "starting_after must be the sequence number of an event (an integer from 0)",
            param="starting_after",
            code="invalid_value",
        )
    return after


def _asks_background(body: bytes) -> bool:
    # Most bodies never mention it; the rest are parsed once more here.
    if b'"background"' not in body:
        return False
    try:
        data = json.loads(body)
    except ValueError:
        return False  # the pipeline answers the malformed body
    return isinstance(data, dict) and data.get("background") is True
