"""The events of streamed background responses: written by the run, read by any client.

A background response created with ``stream: true`` runs in one replica and writes each
event it sends to the response's event log in Redis (:class:`~gateway.state.ResponseEventLog`).
The client that created it reads the log from the start, and any later
``GET /v1/responses/{id}?stream=true&starting_after=N``, on any replica, from after event N:
a client whose connection dropped picks up where it left off, and leaving does not stop the
run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from typing import Any

from gateway.serving.responses_output import TERMINAL_EVENTS, event_frame, frame_kind
from gateway.state import LoggedEvent, ResponseEventLog, StateUnavailableError

__all__ = ["EventPublisher", "replay_events"]

logger = logging.getLogger(__name__)

#: A reader's check whether the run has ended: the final response object, or None while it runs.
EndedCheck = Callable[[], Awaitable[dict[str, Any] | None]]


class EventPublisher:
    """Writes one run's events to its log, in order, without holding the run up.

    :meth:`publish` queues the events and returns; one writer task at a time sends all that
    are queued in one pipelined write, so a run is never paced by Redis round trips and, under
    load, events go in batches. Events Redis cannot take now stay queued and go with the next
    ones (the log skips any it already has): a short Redis outage delays readers, no event is
    lost.
    """

    def __init__(self, log: ResponseEventLog, tenant: str, response_id: str, *, next_sequence: int = 0) -> None:
        self._log = log
        self._tenant = tenant
        self._response_id = response_id
        self._first = self._next = next_sequence
        self._pending: list[LoggedEvent] = []
        self._writer: asyncio.Task[None] | None = None
        # Every event of the run, for the creator's stream in this replica (see :meth:`follow`).
        self._published: list[LoggedEvent] = []
        self._changed = asyncio.Event()
        self._closed = False

    @property
    def next_sequence(self) -> int:
        """The sequence number the next event gets."""
        return self._next

    async def publish(self, frames: Iterable[bytes], *, strict: bool = False) -> None:
        """Queue ``frames`` after those already published and have them written. ``strict``
        writes them now, and raises :class:`StateUnavailableError` when Redis cannot take them."""
        for frame in frames:
            event = LoggedEvent(self._next, frame_kind(frame), frame)
            self._pending.append(event)
            self._published.append(event)
            self._next += 1
        self._wake()
        if strict:
            await self._write()
        elif self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_quietly())

    def close(self) -> None:
        """The run is over: :meth:`follow` ends after the events published so far."""
        self._closed = True
        self._wake()

    async def follow(self, after: int = -1) -> AsyncGenerator[bytes]:
        """The run's events after sequence number ``after`` (-1: all), as they are published,
        until the last or until :meth:`close`: streams in this replica (the creator's, and
        resumed ones that land here) read from memory, with no Redis round trip per event; the
        log is there for the other replicas."""
        index = max(0, after + 1 - self._first)
        while True:
            while index < len(self._published):
                event = self._published[index]
                index += 1
                yield event.frame
                if event.kind in TERMINAL_EVENTS:
                    return
            if self._closed:
                return
            await self._changed.wait()

    def _wake(self) -> None:
        # Followers wait on the current event; a fresh one is made for the next change.
        self._changed.set()
        self._changed = asyncio.Event()

    async def drain(self, *, attempts: int, delay_s: float) -> None:
        """Wait until every queued event is written, trying again ``attempts`` times
        ``delay_s`` apart (the run's last events: after them nothing else would carry them)."""
        if self._writer is not None:
            await asyncio.shield(self._writer)
        for _ in range(attempts):
            if not self._pending:
                return
            await asyncio.sleep(delay_s)
            await self._write_quietly()
        if self._pending:
            lost = len(self._pending)
            logger.error("background response %s: %d events were lost to a redis outage", self._response_id, lost)

    async def _write(self) -> None:
        while self._pending:
            batch = list(self._pending)
            await self._log.append(self._tenant, self._response_id, batch)
            del self._pending[: len(batch)]

    async def _write_quietly(self) -> None:
        try:
            await self._write()
        except StateUnavailableError as exc:
            waiting = len(self._pending)
            logger.warning("background response %s: %d events wait for redis: %s", self._response_id, waiting, exc)


async def replay_events(
    log: ResponseEventLog,
    tenant: str,
    response_id: str,
    *,
    after: int,
    ended: EndedCheck,
    poll_s: float,
    grace_s: float,
) -> AsyncGenerator[bytes]:
    """The logged events of ``response_id`` after sequence number ``after`` (-1: all), then
    the new ones as the run writes them, until the last.

    While the log is quiet, ``ended`` is asked every ``poll_s`` whether the run is over. A
    cancelled run's stream ends with what was logged. A run whose final event is still missing
    ``grace_s`` after it ended (its replica died, or Redis lost the write) gets that event
    made from its stored response, so a reader learns how it ended.
    """
    last = after
    next_check = time.monotonic()
    final: dict[str, Any] | None = None
    ended_at = 0.0
    try:
        while True:
            events = await log.read(tenant, response_id, last, wait=True)
            for event in events:
                yield event.frame
                last = event.sequence
                if event.kind in TERMINAL_EVENTS:
                    return
            if events:
                continue
            now = time.monotonic()
            if final is None:
                if now < next_check:
                    continue
                next_check = now + poll_s
                final = await ended()
                ended_at = now
                if final is None:
                    continue
            if final.get("status") not in ("completed", "incomplete", "failed"):
                return  # cancelled (or deleted): the stream ends with what was logged
            if now - ended_at >= grace_s:
                newest = await log.last(tenant, response_id)
                if newest is not None and newest.kind in TERMINAL_EVENTS:
                    return  # the reader resumed after the last event: nothing more to send
                yield event_frame(f"response.{final.get('status')}", last + 1, {"response": final})
                return
    except StateUnavailableError as exc:
        # Mid-stream there is no status code to answer with: say so in the stream's own terms.
        yield event_frame("error", last + 1, {"code": exc.code, "message": exc.message, "param": None})
