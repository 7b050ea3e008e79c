"""Errors of the shared-state layer, inside the gateway's one exception tree."""

from __future__ import annotations

import re

from redis.exceptions import RedisError

from gateway.errors import ServiceUnavailableError

__all__ = ["REDIS_FAILURES", "StateUnavailableError", "describe_error"]

#: What a Redis call can raise when Redis is unreachable, slow or refuses the command.
REDIS_FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)

# Redis URLs in error text would carry the password; never let one through.
_URL_CREDENTIALS = re.compile(r"(\w+://)[^/@\s]*@")


class StateUnavailableError(ServiceUnavailableError):
    """Redis cannot be reached and the configuration says not to guess (HTTP 503, ``Retry-After``)."""

    default_code = "state_unavailable"


def describe_error(exc: BaseException, limit: int = 200) -> str:
    """``Type: message`` of a Redis failure, shortened and without URL credentials (safe to log or show)."""
    text = _URL_CREDENTIALS.sub(r"\1***@", str(exc))
    return f"{type(exc).__name__}: {text}"[:limit]
