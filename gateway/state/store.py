"""One facade per replica over the shared state in Redis.

:class:`StateStore` owns the single ``redis.asyncio.Redis`` client of the replica and
the components built on it (keys, rate limits, response cache, capture, ledger), all sharing one
:class:`RedisHealth`. The client is tuned for the hot path: sub-second connect and
operation timeouts and at most one immediate retry, so a dead Redis costs a request
milliseconds (refused) or ~1 s at worst (black-holed), never redis-py's defaults of 5 s
timeouts and 10 retries.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from types import TracebackType
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

from gateway.state.api_keys import ApiKeyStore, read_secret_env
from gateway.state.capture import ConversationCapture
from gateway.state.config import StateConfig
from gateway.state.conversations import ConversationStore
from gateway.state.health import RedisHealth
from gateway.state.keys import KeySpace
from gateway.state.ledger import BufferedWriter
from gateway.state.rate_limit import RateLimiter
from gateway.state.response_cache import ResponseCache
from gateway.state.response_events import ResponseEventLog
from gateway.state.stored_responses import ResponseStore

__all__ = ["StateStore", "build_client", "redact_url"]

logger = logging.getLogger(__name__)

_SCHEMES = ("redis", "rediss", "unix")


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to log)."""
    parts = urlsplit(url)
    if parts.password is None and "password=" not in parts.query:
        return url
    netloc = parts.netloc
    if parts.password is not None:
        user = parts.username or ""
        host = netloc.rsplit("@", 1)[1]
        netloc = f"{user}:***@{host}"
    query = "&".join(
        "password=***" if item.startswith("password=") else item for item in parts.query.split("&") if item
    )
    # Built by hand: urlunsplit drops the empty authority of "unix:///path".
    text = f"{parts.scheme}://{netloc}{parts.path}"
    if query:
        text += f"?{query}"
    return text + (f"#{parts.fragment}" if parts.fragment else "")


def build_client(url: str, *, op_timeout_s: float = 0.5, connect_timeout_s: float = 0.5) -> Redis:
    """A ``redis.asyncio.Redis`` for ``redis://``, ``rediss://`` (TLS) or ``unix://`` URLs.

    Credentials and TLS options come from the URL (``rediss://:pw@host:6380/0?ssl_ca_certs=...``).
    Raises ValueError for other schemes; connects lazily (nothing is sent here).
    """
    scheme = urlsplit(url).scheme
    if scheme not in _SCHEMES:
        raise ValueError(f"unsupported redis URL scheme {scheme!r}: use redis://, rediss:// or unix://")
    return Redis.from_url(
        url,
        socket_timeout=op_timeout_s,
        socket_connect_timeout=connect_timeout_s,
        # One retry, only for a broken connection (a pooled socket that Redis closed on
        # restart), never for a timeout: a timed-out write may have been applied, and
        # retrying it would also double the time a request waits for a slow Redis.
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        # Spot sockets that died while idle before a hot-path command uses them.
        health_check_interval=30,
        decode_responses=False,
        client_name="slm-router",
    )


class StateStore:
    """The replica's shared-state facade: one Redis client and every component on it."""

    def __init__(self, client: Redis, config: StateConfig | None = None, *, pepper: bytes = b"") -> None:
        """Wrap ``client`` (owned: :meth:`close` closes it). Prefer :meth:`from_url`."""
        self.config = config or StateConfig()
        self.client = client
        self.keys = KeySpace(self.config.prefix)
        self.health = RedisHealth(client, probe_interval_s=self.config.probe_interval_s)
        self.api_keys = ApiKeyStore(client, self.keys, self.health, self.config.auth, pepper=pepper)
        self.rate_limiter = RateLimiter(
            client,
            self.keys,
            self.health,
            fail_open_when_redis_down=self.config.rate_limits.fail_open_when_redis_down,
            default_rpm=self.config.rate_limits.default_rpm,
            default_tpm=self.config.rate_limits.default_tpm,
        )
        self.cache = ResponseCache(client, self.keys, self.health, self.config.cache)
        self.responses = ResponseStore(client, self.keys, self.health, self.config.responses)
        self.conversations = ConversationStore(client, self.keys, self.health, self.config.conversations)
        self.response_events = ResponseEventLog(
            client, self.keys, self.health, self.config.responses, block_s=min(0.25, self.config.op_timeout_s / 2)
        )
        self.capture = ConversationCapture(client, self.keys, self.health, self.config.capture)
        self.ledger = BufferedWriter(client, self.health, max_entries=self.config.ledger_buffer_max_entries)

    @classmethod
    def from_url(
        cls, url: str, config: StateConfig | None = None, *, environ: Mapping[str, str] | None = None
    ) -> StateStore:
        """Build the store for ``url``; the key pepper comes from ``config.auth.pepper_env``."""
        config = config or StateConfig()
        env = os.environ if environ is None else environ
        pepper = read_secret_env(config.auth.pepper_env, env)
        client = build_client(url, op_timeout_s=config.op_timeout_s, connect_timeout_s=config.connect_timeout_s)
        logger.info("shared state in redis at %s (prefix %r)", redact_url(url), config.prefix)
        return cls(client, config, pepper=pepper.encode() if pepper else b"")

    def __repr__(self) -> str:
        return f"StateStore(prefix={self.config.prefix!r}, degraded={self.health.degraded})"

    async def start(self) -> bool:
        """Ping Redis and start the ledger flush loop; returns whether Redis answered.

        A Redis that is down at start is not fatal: components degrade per configuration
        and recover on their own.
        """
        reachable = await self.health.ping()
        self.ledger.start()
        return reachable

    async def close(self) -> None:
        """Flush what the ledger can, stop its loop and close the client."""
        await self.ledger.aclose()
        await self.client.aclose()

    async def __aenter__(self) -> StateStore:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
