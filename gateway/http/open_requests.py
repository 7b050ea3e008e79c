"""How many API requests one replica is serving right now, counted at the ASGI layer; its drain.

A request is open from the moment its HTTP scope reaches the app until the app returns:
for a stream that is after its last byte, or when the client disconnects and the task is
cancelled. Counting here, rather than in the serving logic, also covers requests that end
in an unexpected exception or a cancellation before any bookkeeping started, which is what
makes the gauge trustworthy for spotting leaked requests (it must return to 0 when idle).

The same count lets a replica drain before it stops: once draining, new API requests get an
OpenAI-shaped 503 (retryable, ``Connection: close`` so a balancer's next try dials afresh)
while the open ones finish. Serve's own drain starts only after the application is deleted,
when its proxy has already dropped the route and answers newcomers with a plain-text 404.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from starlette.responses import JSONResponse

from gateway.errors import ServiceUnavailableError

__all__ = ["OPEN_REQUESTS_METRIC", "OpenRequests", "OpenRequestsMiddleware"]

#: Prometheus gauge name; labelled with the replica, because each replica counts its own.
OPEN_REQUESTS_METRIC = "slm_router_open_requests"


class OpenRequests:
    """The open-request count of one replica, for paths under ``prefix``, and whether it drains."""

    def __init__(self, replica: str | None = None, *, prefix: str = "/v1/") -> None:
        self.replica = replica or "local"
        self.prefix = prefix
        self.value = 0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    async def drain(self, timeout_s: float) -> int:
        """Refuse new requests from now on and wait up to ``timeout_s`` for the open ones.

        Returns how many are still open (0: drained). Draining cannot be undone: it is the
        replica's way out.
        """
        self.draining = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        return self.value

    def opened(self) -> None:
        """A request came in."""
        self.value += 1
        self._idle.clear()

    def closed(self) -> None:
        """A request ended, however it ended."""
        self.value -= 1
        if self.value == 0:
            self._idle.set()

    def counts(self, scope: dict[str, Any]) -> bool:
        """Whether ``scope`` is a request this counter tracks (HTTP, under the prefix)."""
        return scope.get("type") == "http" and str(scope.get("path", "")).startswith(self.prefix)

    def exposition(self) -> bytes:
        """The gauge in Prometheus text format, to append to a ``/metrics`` answer."""
        registry = CollectorRegistry(auto_describe=False)
        gauge = Gauge(
            OPEN_REQUESTS_METRIC,
            f"Requests under {self.prefix} this replica is serving now (streams until their last byte)",
            ["replica"],
            registry=registry,
        )
        gauge.labels(self.replica).set(self.value)
        return generate_latest(registry)


class OpenRequestsMiddleware:
    """Pure ASGI middleware that keeps :class:`OpenRequests` up to date (no buffering of bodies).

    While the counter drains, it answers the requests it would count with a 503 instead.
    """

    def __init__(self, app: Any, counter: OpenRequests) -> None:
        self._app = app
        self._counter = counter

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Count the request while the wrapped app handles it, however it ends."""
        if not self._counter.counts(scope):
            await self._app(scope, receive, send)
            return
        if self._counter.draining:
            await _refusal()(scope, receive, send)
            return
        self._counter.opened()
        try:
            await self._app(scope, receive, send)
        finally:
            self._counter.closed()


def _refusal() -> JSONResponse:
    error = ServiceUnavailableError(
        "this slm-router replica is shutting down; retry the request", code="shutting_down", retry_after=1
    )
    return JSONResponse(
        error.to_openai(), status_code=error.status_code, headers={**error.headers(), "Connection": "close"}
    )
