"""Retries of hosted-model calls with exponential backoff, shared by both transports."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import aiohttp
import httpx

from gateway.errors import GatewayError, ServiceUnavailableError, UpstreamError, UpstreamTimeoutError

__all__ = ["call_with_retries", "dropped_connection"]

T = TypeVar("T")

#: The longest single wait between two attempts.
MAX_BACKOFF_S = 4.0

#: Failures to open a connection: the upstream is down, and asking again at once would not help.
_NOT_DROPPED = (TimeoutError, httpx.TimeoutException, aiohttp.ClientConnectorError, ConnectionRefusedError)
#: The upstream closed a connection before it answered (a reset, a broken pipe, a disconnect).
_DROPPED = (
    aiohttp.ClientConnectionError,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
    ConnectionError,
)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def dropped_connection(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) is a connection the upstream closed before answering.

    The usual case is a pooled keep-alive connection that the server closed for idleness just as
    the client reused it: a server whose keep-alive timeout equals the client's (uvicorn's 5 s,
    say, so any vLLM or stand-in server) loses such a race now and then. Timeouts and refused
    connections are not drops.
    """
    causes = list(_causes(exc))
    if any(isinstance(cause, _NOT_DROPPED) for cause in causes):
        return False
    return any(isinstance(cause, _DROPPED) for cause in causes)


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    translate: Callable[[Exception], GatewayError],
    *,
    num_retries: int,
    backoff_s: float,
) -> T:
    """Await ``call()``; retry failures that a later attempt may not have, waiting 1x, 2x, 4x ``backoff_s``.

    Every failure leaves as a :class:`GatewayError` (``translate`` maps foreign exceptions).
    A rejected credential is never retried: it will be rejected again. The first dropped
    connection (see :func:`dropped_connection`) is retried at once and does not count against
    ``num_retries``, as the openai SDK retries connection errors by default: it says nothing
    about the upstream's health, and with ``num_retries: 0`` it would otherwise be the client's 502.
    """
    attempt = 0
    redialled = False
    while True:
        try:
            return await call()
        except Exception as exc:
            if not redialled and dropped_connection(exc):
                redialled = True
                continue
            error = exc if isinstance(exc, GatewayError) else translate(exc)
            retryable = isinstance(error, UpstreamError | ServiceUnavailableError | UpstreamTimeoutError)
            if not retryable or error.code == "upstream_auth_failed" or attempt >= num_retries:
                if error is exc:
                    raise
                raise error from exc
            await asyncio.sleep(min(backoff_s * 2**attempt, MAX_BACKOFF_S))
            attempt += 1
