"""Whether this replica can reach Redis right now, as seen by every state component.

Components report each Redis call's outcome here. After a failure the tracker is
*degraded* until a call succeeds again, and :meth:`RedisHealth.allow_attempt` lets only
one caller per ``probe_interval_s`` try Redis meanwhile: with a black-holed Redis every
request would otherwise pay the full socket timeout before falling back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio import Redis

from gateway.state.errors import REDIS_FAILURES, StateUnavailableError, describe_error

__all__ = ["RedisHealth"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class RedisHealth:
    """Reachability of Redis for one replica, fed by component outcomes and :meth:`ping`."""

    def __init__(
        self,
        client: Redis,
        *,
        probe_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._probe_interval_s = probe_interval_s
        self._clock = clock
        self._degraded = False
        self._since: float | None = None
        self._next_probe = 0.0
        self._last_error: str | None = None
        self._failures = 0
        self._recovery_listeners: list[Callable[[], None]] = []

    @property
    def degraded(self) -> bool:
        """True while the last Redis call from this replica failed."""
        return self._degraded

    @property
    def last_error(self) -> str | None:
        """The last failure, as ``Type: message`` without credentials."""
        return self._last_error

    @property
    def probe_interval_s(self) -> float:
        """Seconds between attempts while degraded (also a sensible ``Retry-After``)."""
        return self._probe_interval_s

    def add_recovery_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (synchronously, must not raise) each time Redis comes back."""
        self._recovery_listeners.append(callback)

    def record_success(self) -> None:
        """A Redis call succeeded."""
        if self._degraded:
            down_for = self._clock() - (self._since or self._clock())
            logger.warning("redis is reachable again after %.1fs (%d failed calls)", down_for, self._failures)
            self._degraded = False
            self._since = None
            self._failures = 0
            for callback in list(self._recovery_listeners):
                try:
                    callback()
                except Exception:
                    logger.exception("a redis recovery listener failed")

    def record_failure(self, exc: BaseException) -> None:
        """A Redis call failed (the error is kept without credentials)."""
        self._last_error = describe_error(exc)
        self._failures += 1
        now = self._clock()
        self._next_probe = now + self._probe_interval_s
        if not self._degraded:
            logger.error("redis is unreachable, shared state is degraded: %s", self._last_error)
            self._degraded = True
            self._since = now

    def allow_attempt(self) -> bool:
        """Whether a caller should try Redis now: always when healthy, one probe per interval when degraded."""
        if not self._degraded:
            return True
        now = self._clock()
        if now >= self._next_probe:
            self._next_probe = now + self._probe_interval_s
            return True
        return False

    async def guarded(self, call: Callable[[], Awaitable[T]], unavailable: StateUnavailableError) -> T:
        """``call()``, with its outcome recorded; ``unavailable`` is raised instead when Redis
        fails or is not to be tried now (for reads whose "nothing there" would be a lie)."""
        if not self.allow_attempt():
            raise unavailable
        try:
            result = await call()
        except REDIS_FAILURES as exc:
            self.record_failure(exc)
            raise unavailable from None
        self.record_success()
        return result

    async def ping(self) -> bool:
        """PING Redis (whatever the probe interval) and record the outcome."""
        try:
            await self._client.ping()
        except REDIS_FAILURES as exc:
            self.record_failure(exc)
            return False
        self.record_success()
        return True

    async def check(self) -> None:
        """Readiness check for :class:`gateway.serving.HealthService`: raises when Redis does not answer."""
        if not await self.ping():
            raise StateUnavailableError(f"redis unreachable: {self._last_error}", retry_after=self._probe_interval_s)

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready state for health endpoints and logs."""
        down_for = None if self._since is None else round(self._clock() - self._since, 3)
        return {
            "degraded": self._degraded,
            "down_for_s": down_for,
            "failed_calls": self._failures,
            "last_error": self._last_error,
        }
