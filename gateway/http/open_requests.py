"""How many API requests one replica is serving right now, counted at the ASGI layer.

A request is open from the moment its HTTP scope reaches the app until the app returns:
for a stream that is after its last byte, or when the client disconnects and the task is
cancelled. Counting here, rather than in the serving logic, also covers requests that end
in an unexpected exception or a cancellation before any bookkeeping started, which is what
makes the gauge trustworthy for spotting leaked requests (it must return to 0 when idle).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest

__all__ = ["OPEN_REQUESTS_METRIC", "OpenRequests", "OpenRequestsMiddleware"]

#: Prometheus gauge name; labelled with the replica, because each replica counts its own.
OPEN_REQUESTS_METRIC = "slm_router_open_requests"


class OpenRequests:
    """The open-request count of one replica, for paths under ``prefix``."""

    def __init__(self, replica: str | None = None, *, prefix: str = "/v1/") -> None:
        self.replica = replica or "local"
        self.prefix = prefix
        self.value = 0

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
    """Pure ASGI middleware that keeps :class:`OpenRequests` up to date (no buffering of bodies)."""

    def __init__(self, app: Any, counter: OpenRequests) -> None:
        self._app = app
        self._counter = counter

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Count the request while the wrapped app handles it, however it ends."""
        if not self._counter.counts(scope):
            await self._app(scope, receive, send)
            return
        self._counter.value += 1
        try:
            await self._app(scope, receive, send)
        finally:
            self._counter.value -= 1
