"""Background responses (``"background": true``): answered ``queued`` at once and run on.

A run is served by the chat pipeline like any response, in the replica that took it
(supervised by :class:`~gateway.serving.background_runs.BackgroundRuns`), and writes its final
record itself. Any replica can read it, cancel it, or end it ``failed`` when its replica died
(its lease lapsed). A response created with ``stream: true`` also writes each event to its
event log (:mod:`gateway.serving.background_stream`): its creator reads the stream from there,
and so can any later ``GET /v1/responses/{id}?stream=true&starting_after=N``.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from gateway.errors import GatewayError, InvalidRequestError, ServiceUnavailableError
from gateway.serving.background_runs import BackgroundRuns
from gateway.serving.background_stream import EventPublisher, replay_events
from gateway.serving.chat import HEADER_MODEL, StreamResult
from gateway.serving.conversations_endpoint import ConversationHistory
from gateway.serving.endpoint import AdmittedRequest, ChatEndpoint
from gateway.serving.responses_output import (
    TERMINAL_EVENTS,
    ResponseEventStream,
    ResponseShell,
    assistant_turn,
    event_frame,
    frame_kind,
    listed_input_items,
    queued_events,
)
from gateway.serving.responses_results import (
    ResponsesResult,
    ResponsesStream,
    ServedRequest,
    dropped_params,
    in_responses_terms,
    is_running,
)
from gateway.state import ResponseEventLog, ResponseStore, StateUnavailableError, StoredResponse

__all__ = ["BackgroundResponses"]

logger = logging.getLogger(__name__)


class BackgroundResponses:
    """Queues, runs, streams, settles and cancels background responses."""

    def __init__(
        self,
        chat: ChatEndpoint,
        store: ResponseStore,
        runs: BackgroundRuns,
        events: ResponseEventLog,
        conversations: ConversationHistory,
    ) -> None:
        self._conversations = conversations
        self._chat = chat
        self._store = store
        self._runs = runs
        self._events = events
        # The streamed runs of this replica, by response id: a stream resumed here follows the
        # run in memory.
        self._publishers: dict[str, EventPublisher] = {}

    async def close(self) -> None:
        """Stop the runs of this replica (each is recorded as failed)."""
        await self._runs.close()

    async def queue(
        self, headers: Mapping[str, str], context: ServedRequest, admitted: AdmittedRequest
    ) -> ResponsesResult | ResponsesStream:
        """Keep the admitted request as ``queued`` and start its run; the answer is the queued
        response (with the rate-limit headers), or with ``stream``, its events from the first."""
        request, tenant = context.request, context.caller.tenant
        shell = ResponseShell(
            id=f"resp_{uuid.uuid4().hex}", model=request.model, request=request, store=True, background=True
        )
        queued = shell.build([], status="queued")
        publisher: EventPublisher | None = None
        if request.stream:
            publisher = EventPublisher(self._events, tenant, shell.id)
            await publisher.publish(queued_events(queued), strict=True)
        listed = listed_input_items(request.input)
        await self._store.start_background(
            tenant, StoredResponse(queued, context.form.conversation, listed), self._runs.lease_s
        )
        if publisher is not None:
            self._publishers[shell.id] = publisher  # until its run ends (see _run)
        stopped = ServiceUnavailableError("the gateway stopped before this response finished; create it again")
        self._runs.start(
            tenant,
            shell.id,
            self._run(headers, shell, context, admitted, publisher),
            on_stop=lambda: self._end_failed(shell, context, stopped, publisher),
        )
        limits = admitted.admission.headers()
        if publisher is None:
            return ResponsesResult(body=queued, headers=limits)
        # The creator follows the run in memory; leaving does not stop it.
        return ResponsesStream(events=publisher.follow(), headers=limits)

    async def stream(self, tenant: str, record: StoredResponse, starting_after: int) -> ResponsesStream:
        """The events of a background response created with ``stream: true``, after
        ``starting_after`` (-1: all), live until its last."""
        response_id = str(record.response["id"])
        if not record.response.get("background") or not await self._events.exists(tenant, response_id):
            raise InvalidRequestError(
                "only a background response created with stream: true can be streamed, for "
                "state.responses.background_stream_ttl_s after its last event; GET it without stream",
                param="stream",
            )
        local = self._publishers.get(response_id)
        if local is not None:
            return ResponsesStream(events=local.follow(starting_after))
        return ResponsesStream(events=self._replay(tenant, response_id, after=starting_after))

    async def settle(self, tenant: str, record: StoredResponse) -> dict[str, Any]:
        """A running background response as it stands: failed now if no replica runs it any more."""
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

    async def cancel(self, tenant: str, record: StoredResponse) -> dict[str, Any]:
        """Stop a running background response (on whichever replica runs it)."""
        response_id = str(record.response["id"])
        cancelled = {**record.response, "status": "cancelled"}
        if await self._store.end_background(
            tenant, StoredResponse(cancelled, record.conversation, record.input_items), cancelled=True
        ):
            self._runs.cancel_here(response_id)
            return cancelled
        ended = await self._store.get(tenant, response_id)  # it ended first
        return ended.response if ended is not None else cancelled

    def _replay(self, tenant: str, response_id: str, *, after: int) -> AsyncIterator[bytes]:
        async def ended() -> dict[str, Any] | None:
            record = await self._store.get(tenant, response_id)
            if record is None:
                return {}  # deleted: the stream ends with what it sent
            response = await self.settle(tenant, record) if is_running(record.response) else record.response
            return None if is_running(response) else response

        poll_s = self._runs.poll_s
        return replay_events(
            self._events, tenant, response_id, after=after, ended=ended, poll_s=poll_s, grace_s=2 * poll_s
        )

    async def _run(
        self,
        headers: Mapping[str, str],
        shell: ResponseShell,
        context: ServedRequest,
        admitted: AdmittedRequest,
        publisher: EventPublisher | None,
    ) -> None:
        try:
            try:
                result = await self._chat.serve(admitted, headers)
            except GatewayError as error:
                await self._end_failed(shell, context, in_responses_terms(error), publisher)
                return
            if isinstance(result, StreamResult):
                assert publisher is not None
                await self._publish(result, shell, context, publisher)
                return
            final = dataclasses.replace(shell, model=result.response.model, dropped=dropped_params(result.headers))
            response, items = final.from_chat(result.response)
            conversation = [*context.form.conversation, assistant_turn(items)]
            listed = listed_input_items(context.request.input)
            record = StoredResponse(response, conversation, listed)
            if await self._store.end_background(context.caller.tenant, record):
                await self._conversations.add_turn(context, items)
        finally:
            if publisher is not None:  # however the run ends, its followers here stop waiting
                publisher.close()
                self._publishers.pop(shell.id, None)

    async def _publish(
        self, result: StreamResult, shell: ResponseShell, context: ServedRequest, publisher: EventPublisher
    ) -> None:
        """Run a streamed response: its events go to the log, its end to the record."""
        store, tenant = self._store, context.caller.tenant
        listed = listed_input_items(context.request.input)
        won = True

        async def end(response: dict[str, Any], conversation: list[dict[str, Any]]) -> None:
            nonlocal won
            try:
                won = await store.end_background(tenant, StoredResponse(response, conversation, listed))
            except StateUnavailableError:
                # The events still carry the answer; the record reads as failed once the lease lapses.
                logger.warning("background response %s: its end could not be recorded", shell.id)

        async def finished(response: dict[str, Any], items: list[dict[str, Any]]) -> bool:
            await end(response, [*context.form.conversation, assistant_turn(items)])
            if won:
                await self._conversations.add_turn(context, items)
            return True

        async def failed(response: dict[str, Any]) -> None:
            await end(response, context.form.conversation)

        final = dataclasses.replace(
            shell, model=result.headers.get(HEADER_MODEL, shell.model), dropped=dropped_params(result.headers)
        )
        events = ResponseEventStream(final, finished, on_failed=failed, after_queued=True).events(result.chunks)
        try:
            async for frame in events:
                if not won and frame_kind(frame) in TERMINAL_EVENTS:
                    break  # a cancel ended the response first: its record stands, and readers stop there
                await publisher.publish([frame])
        finally:
            await events.aclose()
        await publisher.drain(attempts=3, delay_s=self._runs.poll_s)

    async def _end_failed(
        self,
        shell: ResponseShell,
        context: ServedRequest,
        error: GatewayError,
        publisher: EventPublisher | None = None,
    ) -> None:
        failed = shell.build([], status="failed", error=error)
        record = StoredResponse(failed, context.form.conversation, listed_input_items(context.request.input))
        if await self._store.end_background(context.caller.tenant, record) and publisher is not None:
            sequence = publisher.next_sequence
            problem = {"code": error.code, "message": error.message, "param": error.param}
            ending = [
                event_frame("error", sequence, problem),
                event_frame("response.failed", sequence + 1, {"response": failed}),
            ]
            await publisher.publish(ending)
            await publisher.drain(attempts=1, delay_s=0.0)
