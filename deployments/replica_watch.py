"""Whether a model deployment has a running replica, polled from Serve's controller.

A handle call to a deployment with no running replica does not fail: Serve queues it until a
replica comes up, which after a crash is a vLLM cold start (a minute or more). A routed request
would wait that long for a tier it could have escalated past at once, and a request naming the
model would wait until its timeout. The ingress therefore watches each fixed-size model
deployment and refuses calls while it has no running replica (see
:class:`deployments.handle_engine.DeploymentHandleEngine`).

The controller notices a dead replica only at its next failed health check (every
``health_check_period_s``, 2 s by default; a hung one only after ``health_check_timeout_s`` as
well), and reports it as running until then. The callers see
the death at once: calls in flight on it fail with an actor-death error, or, when only the
replica's engine died, with :class:`~gateway.errors.EngineDeadError`. When the watched
deployment had a single serving replica, such an error counts it as down right away, until the
controller catches up (reports none serving) or ``death_grace_s`` passes.

Deployments that autoscale from zero are not watched: there, a queued request is what brings a
replica up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

__all__ = ["ReplicaWatch", "running_replicas"]

logger = logging.getLogger(__name__)

#: Counts running replicas of (application, deployment); ``None`` when Serve does not know it.
ReplicaCounter = Callable[[str, str], int | None]


#: Replica states in which a replica serves requests: besides RUNNING, replicas being
#: reconfigured, recovered after a controller restart, or drained off a node still answer.
SERVING_STATES = ("RUNNING", "UPDATING", "RECOVERING", "PENDING_MIGRATION")


def running_replicas(app_name: str, deployment_name: str) -> int | None:
    """Serving replicas of ``deployment_name`` in ``app_name``, from ``serve.status()`` (blocking)."""
    from ray import serve

    app = serve.status().applications.get(app_name)
    if app is None or deployment_name not in app.deployments:
        return None
    states = app.deployments[deployment_name].replica_states
    # ReplicaState is a str enum (in a private module), so the plain names find its keys.
    return sum(int(states.get(state, 0)) for state in SERVING_STATES)


class ReplicaWatch:
    """Polls a deployment's running-replica count every ``poll_s`` seconds in the background.

    Fails open: until the first answer, and whenever the controller cannot be asked, the
    deployment counts as available, so a watch problem never refuses traffic by itself.
    """

    def __init__(
        self,
        app_name: str,
        deployment_name: str,
        *,
        poll_s: float = 1.0,
        death_grace_s: float = 60.0,
        counter: ReplicaCounter = running_replicas,
    ) -> None:
        self._app = app_name
        self._deployment = deployment_name
        self._poll_s = poll_s
        self._counter = counter
        self._running: int | None = None
        self._down_since: float | None = None
        self._death_grace_s = death_grace_s
        #: Set by :meth:`replica_died` while the controller still counts the dead replica.
        self._dead_until: float | None = None
        self._down = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def available(self) -> bool:
        """False when the last poll saw no serving replica, or its only replica was seen to die."""
        if self._dead_until is not None and time.monotonic() < self._dead_until:
            return False
        return self._running != 0

    def replica_died(self) -> None:
        """A call failed because the replica's actor or engine died: with one replica, that is all of them."""
        if self._running != 1 or not self.available:
            return  # others still serve (Serve's router drops the dead one), or already down
        self._dead_until = time.monotonic() + self._death_grace_s
        self._went_down()

    def _went_down(self) -> None:
        self._down_since = time.monotonic()
        self._down.set()
        logger.warning("%s has no running replica: refusing calls until one runs", self._deployment)

    @property
    def down_for_s(self) -> float:
        """Seconds since the deployment was first seen without a running replica (0 when up)."""
        return 0.0 if self._down_since is None else time.monotonic() - self._down_since

    async def wait_down(self) -> None:
        """Return once the deployment is seen with no running replica (at once if it is now)."""
        await self._down.wait()

    async def poll_once(self) -> None:
        """Ask the controller once (in a thread: ``serve.status()`` blocks) and update the state."""
        try:
            running = await asyncio.to_thread(self._counter, self._app, self._deployment)
        except Exception as exc:  # noqa: BLE001 - a watch failure must not become a request failure
            logger.warning("replica watch for %s: %s", self._deployment, exc)
            running = None
        was_available = self.available
        self._running = running
        if running == 0:
            self._dead_until = None  # the controller caught up: its count rules from here
        if self.available:
            self._dead_until = None
            self._down_since = None
            self._down.clear()
            if not was_available:
                logger.info("%s has a running replica again", self._deployment)
        elif was_available:
            self._went_down()

    async def start(self) -> None:
        """Poll once, then keep polling in a background task until :meth:`close`."""
        if self._task is not None:
            return
        await self.poll_once()
        self._task = asyncio.create_task(self._loop(), name=f"replica-watch:{self._deployment}")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            await self.poll_once()

    async def close(self) -> None:
        """Stop polling."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
