"""Retries of hosted-model calls with exponential backoff, shared by both transports."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from gateway.errors import GatewayError, ServiceUnavailableError, UpstreamError, UpstreamTimeoutError

__all__ = ["call_with_retries"]

T = TypeVar("T")

#: The longest single wait between two attempts.
MAX_BACKOFF_S = 4.0


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    translate: Callable[[Exception], GatewayError],
    *,
    num_retries: int,
    backoff_s: float,
) -> T:
    """Await ``call()``; retry failures that a later attempt may not have, waiting 1x, 2x, 4x ``backoff_s``.

    Every failure leaves as a :class:`GatewayError` (``translate`` maps foreign exceptions).
    A rejected credential is never retried: it will be rejected again.
    """
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as exc:
            error = exc if isinstance(exc, GatewayError) else translate(exc)
            retryable = isinstance(error, UpstreamError | ServiceUnavailableError | UpstreamTimeoutError)
            if not retryable or error.code == "upstream_auth_failed" or attempt >= num_retries:
                if error is exc:
                    raise
                raise error from exc
            await asyncio.sleep(min(backoff_s * 2**attempt, MAX_BACKOFF_S))
            attempt += 1
