"""Background responses (``"background": true``) running in this replica.

Each run is a task that serves the request through the chat pipeline and writes the final
record itself. A supervisor beside it renews the run's lease in Redis (so a ``GET`` on any
replica can tell a run whose replica died: its lease lapses) and polls the run's state, so
that a cancel received by any replica stops it within a poll
(``state.responses.background_poll_s``). Stopping the replica ends its runs as failed, with a
message that says to create them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from gateway.state import ResponseStore, StateUnavailableError

__all__ = ["BackgroundRuns"]

logger = logging.getLogger(__name__)


class BackgroundRuns:
    """The background responses this replica runs, by response id."""

    def __init__(self, store: ResponseStore, *, poll_s: float, lease_s: float) -> None:
        self._store = store
        self._poll_s = poll_s
        self._lease_s = lease_s
        self._runs: dict[str, asyncio.Task[None]] = {}

    @property
    def poll_s(self) -> float:
        """How often a run's lease is renewed and its state read."""
        return self._poll_s

    @property
    def lease_s(self) -> float:
        """How long a run's lease lasts without renewal."""
        return self._lease_s

    def start(
        self,
        tenant: str,
        response_id: str,
        work: Coroutine[Any, Any, None],
        on_stop: Callable[[], Awaitable[None]],
    ) -> None:
        """Run ``work`` (which writes the final record) under supervision; ``on_stop`` records the
        run as failed when the replica stops it."""
        task = asyncio.get_running_loop().create_task(self._supervise(tenant, response_id, work, on_stop))
        self._runs[response_id] = task
        task.add_done_callback(lambda _: self._runs.pop(response_id, None))

    def cancel_here(self, response_id: str) -> None:
        """Stop the run now if this replica has it (the supervisor of another one sees the state)."""
        task = self._runs.get(response_id)
        if task is not None:
            task.cancel("cancelled")

    async def close(self) -> None:
        """Stop every run (each records itself as failed)."""
        tasks = list(self._runs.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _supervise(
        self,
        tenant: str,
        response_id: str,
        work: Coroutine[Any, Any, None],
        on_stop: Callable[[], Awaitable[None]],
    ) -> None:
        run = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({run}, timeout=self._poll_s)
                if done:
                    run.result()
                    return
                try:
                    await self._store.renew_lease(tenant, response_id, self._lease_s)
                    cancelled = await self._store.background_state(tenant, response_id) == "cancelled"
                except StateUnavailableError as exc:
                    # Redis away for a moment: the run goes on, and the lease is renewed next time.
                    logger.warning("background response %s: lease or state unreadable: %s", response_id, exc)
                    continue
                if cancelled:
                    await _stop(run)
                    return
        except asyncio.CancelledError as stop:
            await _stop(run)
            if stop.args != ("cancelled",):  # the replica stops: the run is lost
                with contextlib.suppress(Exception):
                    await on_stop()
                raise
        except Exception:
            logger.exception("background response %s failed outside the pipeline", response_id)


async def _stop(run: asyncio.Future[None]) -> None:
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
