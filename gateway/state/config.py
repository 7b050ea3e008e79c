"""Settings of the shared state (auth, rate limits, response cache, capture) kept in Redis.

They follow the house rules of :mod:`gateway.config`: every model forbids unknown keys
and is frozen. :class:`StateConfig` is meant to be nested into ``GatewayConfig`` as its
``state`` section; where Redis itself lives stays in ``GatewayConfig.redis``.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.state.keys import DEFAULT_PREFIX

__all__ = ["AuthConfig", "CacheConfig", "CaptureConfig", "RateLimitConfig", "ResponseStoreConfig", "StateConfig"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthConfig(_Strict):
    """API-key authentication."""

    #: On by default; the local profile (gateway/default_config.yaml) turns it off. When
    #: on, every ``/v1`` request needs ``Authorization: Bearer sk-slm-...``.
    enabled: bool = True
    #: Name of the environment variable holding the admin key (never the key itself).
    admin_key_env: str = "SLM_ROUTER_ADMIN_KEY"
    #: Name of the environment variable holding the server-side pepper mixed into key
    #: hashes. Every replica must see the same value; changing it invalidates every key.
    #: Unset (or empty variable) means no pepper: secrets are 256-bit random, so the
    #: hash is still not reversible, the pepper only adds defence in depth.
    pepper_env: str | None = "SLM_ROUTER_KEY_PEPPER"
    #: When Redis is down: ``True`` accepts keys this replica verified within
    #: ``stale_ttl_s`` (a key revoked meanwhile stays usable until Redis is back);
    #: ``False`` answers 503 for every key not verified within ``cache_ttl_s``.
    #: Keys never seen before get 503 either way: they cannot be checked.
    fail_open_when_redis_down: bool = False
    #: Seconds a verified key is trusted without asking Redis (the revocation delay).
    cache_ttl_s: float = Field(5.0, ge=0, le=60)
    #: Seconds a verified key may be used while Redis is down (fail-open only).
    stale_ttl_s: float = Field(3600.0, ge=0)
    #: Verified keys remembered per replica.
    cache_max_keys: int = Field(10_000, ge=1)


class RateLimitConfig(_Strict):
    """Per-key requests-per-minute and tokens-per-minute limits (GCRA in Redis)."""

    #: When Redis is down: ``True`` lets requests through, ``False`` answers 503.
    fail_open_when_redis_down: bool = True
    #: Limits for keys whose record sets none (``None``: unlimited).
    default_rpm: int | None = Field(None, ge=1)
    default_tpm: int | None = Field(None, ge=1)


class CacheConfig(_Strict):
    """Exact-match cache of non-stream chat completions."""

    enabled: bool = False
    ttl_s: float = Field(300.0, gt=0)
    #: Entries kept in Redis; past it the oldest are evicted.
    max_entries: int = Field(10_000, ge=1)
    #: Responses whose JSON is larger than this are not cached.
    max_entry_bytes: int = Field(262_144, ge=256)


class ResponseStoreConfig(_Strict):
    """Responses kept for ``GET /v1/responses/{id}`` and ``previous_response_id``."""

    #: How long a response is kept (OpenAI keeps them 30 days).
    ttl_s: float = Field(30 * 24 * 3600.0, gt=0)
    #: A response whose record (object plus conversation) is larger is not kept.
    max_record_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    #: How often a replica running a background response renews its lease and looks for a
    #: cancel (a cancel on another replica stops the run within this).
    background_poll_s: float = Field(1.0, gt=0, le=60)
    #: A background response whose lease was not renewed for this long reads as failed (its
    #: replica stopped). Several polls long, so a slow Redis round trip does not fail a run.
    background_lease_s: float = Field(10.0, gt=0, le=600)
    #: How long the events of a streamed background response (``background`` and ``stream``)
    #: are kept after the last one, for ``GET /v1/responses/{id}?stream=true`` to replay.
    background_stream_ttl_s: float = Field(3600.0, gt=0, le=30 * 24 * 3600.0)

    @model_validator(mode="after")
    def _lease_outlasts_polls(self) -> ResponseStoreConfig:
        if self.background_lease_s < 2 * self.background_poll_s:
            raise ValueError("background_lease_s must be at least twice background_poll_s")
        return self


class ConversationStoreConfig(_Strict):
    """Conversations (``/v1/conversations``, and ``conversation`` on ``/v1/responses``)."""

    #: A conversation not written for this long is forgotten (each write renews it).
    ttl_s: float = Field(30 * 24 * 3600.0, gt=0)
    #: Items a conversation holds at most: a response or an items request that would pass it
    #: is refused (every item is sent to the model with each response).
    max_items: int = Field(10_000, ge=1, le=1_000_000)
    #: An item whose JSON is larger is refused.
    max_item_bytes: int = Field(1024 * 1024, ge=1024)


class CaptureConfig(_Strict):
    """A random sample of request conversations kept for labelling (``slm-router label``).

    Off by default: conversations are your users' text. With ``share`` above zero, that share
    of chat requests (after authentication, validation and rate limits) is kept in Redis, the
    newest ``max_entries`` for at most ``max_age_s``, for the admin API to export
    (``slm-router capture export``). A request that says ``"store": false`` is never kept.
    """

    #: Fraction of requests kept, 0 (off) to 1.
    share: float = Field(0.0, ge=0, le=1)
    #: Conversations kept; past it the oldest are dropped.
    max_entries: int = Field(10_000, ge=1, le=1_000_000)
    #: A conversation whose JSON is larger is not kept.
    max_entry_bytes: int = Field(65_536, ge=256)
    #: Retention: a conversation older than this is dropped, and the whole sample expires
    #: this long after the last one kept. ``null`` keeps them until ``max_entries`` drops them.
    max_age_s: float | None = Field(30 * 86_400.0, gt=0)
    #: Tenants whose requests are never kept (for example those whose contracts forbid it).
    exclude_tenants: frozenset[str] = frozenset()


class StateConfig(_Strict):
    """Shared state of all gateway replicas, kept in Redis."""

    #: Namespace prefix of every key (see docs/redis.md).
    prefix: str = DEFAULT_PREFIX
    #: Per-operation socket timeout. Small on purpose: a dead Redis must not hang requests.
    op_timeout_s: float = Field(0.5, gt=0, le=5)
    connect_timeout_s: float = Field(0.5, gt=0, le=5)
    #: While Redis is down, at most one request per interval tries it again.
    probe_interval_s: float = Field(1.0, gt=0)
    #: Ledger entries (distinct keys with pending increments) buffered while Redis is down.
    ledger_buffer_max_entries: int = Field(100_000, ge=1)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    rate_limits: RateLimitConfig = Field(default_factory=RateLimitConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    responses: ResponseStoreConfig = Field(default_factory=ResponseStoreConfig)
    conversations: ConversationStoreConfig = Field(default_factory=ConversationStoreConfig)
    capture: CaptureConfig = Field(default_factory=CaptureConfig)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", value):
            raise ValueError("prefix must be 1-32 characters of letters, digits, '_', '.', '-'")
        return value
