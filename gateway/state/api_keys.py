"""API keys: created once, shown once, stored only as a keyed hash, verified in constant time.

A key reads ``sk-slm-<id>-<secret>``: ``<id>`` (16 hex) names the Redis record, so a
lookup is one ``HGETALL``; ``<secret>`` (43 url-safe characters, 256 random bits) is
never stored, only ``HMAC-SHA256(pepper, "<id>:<secret>")``. Records
(:class:`ApiKeyRecord`) carry no secret and no hash at all, so neither ``repr()`` nor a
log line can leak one.

Verified keys are cached per replica for ``cache_ttl_s`` seconds (the hot path then
needs no Redis round trip); a revocation takes effect everywhere within that TTL, and
at once on the replica that revoked.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import math
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis
from redis.typing import EncodableT

from gateway.state.config import AuthConfig
from gateway.state.errors import REDIS_FAILURES, StateUnavailableError
from gateway.state.health import RedisHealth
from gateway.state.keys import KeySpace

__all__ = [
    "KEY_PREFIX",
    "ApiKeyRecord",
    "ApiKeyStore",
    "format_api_key",
    "parse_api_key",
    "parse_bearer",
    "read_secret_env",
    "verify_admin",
]

#: Every gateway key starts with this (secret scanners can match ``sk-slm-[0-9a-f]{16}-``).
KEY_PREFIX = "sk-slm-"
_KEY_RE = re.compile(r"sk-slm-([0-9a-f]{16})-([A-Za-z0-9_-]{43})")
_MAX_ROUTING_DEFAULTS_BYTES = 16_384


def format_api_key(key_id: str, secret: str) -> str:
    """The plaintext key for ``key_id`` and ``secret``."""
    return f"{KEY_PREFIX}{key_id}-{secret}"


def parse_api_key(plaintext: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` of a well-formed key, else None (nothing about the input is echoed)."""
    if len(plaintext) != len(KEY_PREFIX) + 16 + 1 + 43:
        return None
    match = _KEY_RE.fullmatch(plaintext)
    return (match.group(1), match.group(2)) if match else None


def parse_bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def verify_admin(presented: str | None, expected: str | None) -> bool:
    """Constant-time check of an admin key; always False when no admin key is configured."""
    if not expected or presented is None:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def read_secret_env(name: str | None, environ: Mapping[str, str]) -> str | None:
    """The value of the environment variable ``name`` (None when unset or empty)."""
    if not name:
        return None
    return environ.get(name) or None


class ApiKeyRecord(BaseModel):
    """What the gateway knows about a key: never its secret, never its hash."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: str
    name: str
    tenant: str
    created_at: float
    revoked_at: float | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    budget_usd: float | None = None
    routing_defaults: dict[str, Any] = Field(default_factory=dict)

    @property
    def revoked(self) -> bool:
        """Whether the key was revoked."""
        return self.revoked_at is not None

    @property
    def budget_nusd(self) -> int | None:
        """The budget in nano-dollars, the integer unit of the usage ledger."""
        return None if self.budget_usd is None else round(self.budget_usd * 1_000_000_000)


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decode(raw: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    return {_str(k): _str(v) for k, v in raw.items()}


def _record(key_id: str, fields: Mapping[str, str]) -> ApiKeyRecord:
    def opt_int(name: str) -> int | None:
        return int(fields[name]) if fields.get(name) else None

    return ApiKeyRecord(
        key_id=key_id,
        name=fields.get("name", ""),
        tenant=fields.get("tenant", ""),
        created_at=float(fields.get("created_at", "0")),
        revoked_at=float(fields["revoked_at"]) if fields.get("revoked_at") else None,
        rpm_limit=opt_int("rpm_limit"),
        tpm_limit=opt_int("tpm_limit"),
        budget_usd=float(fields["budget_usd"]) if fields.get("budget_usd") else None,
        routing_defaults=json.loads(fields.get("routing_defaults") or "{}"),
    )


@dataclass
class _Verified:
    digest: str
    record: ApiKeyRecord
    verified_at: float


class ApiKeyStore:
    """Creates, verifies, lists and revokes API keys kept in Redis."""

    def __init__(
        self,
        client: Redis,
        keys: KeySpace,
        health: RedisHealth,
        config: AuthConfig,
        *,
        pepper: bytes = b"",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._keys = keys
        self._health = health
        self._config = config
        self._pepper = pepper
        self._clock = clock
        self._verified: OrderedDict[str, _Verified] = OrderedDict()

    def __repr__(self) -> str:
        return f"ApiKeyStore(keys={self._keys!r})"

    def _digest(self, key_id: str, secret: str) -> str:
        return hmac.new(self._pepper, f"{key_id}:{secret}".encode(), hashlib.sha256).hexdigest()

    def _unavailable(self, exc: BaseException | None = None) -> StateUnavailableError:
        if exc is not None:
            self._health.record_failure(exc)
        return StateUnavailableError(
            "API keys cannot be checked right now (shared state unavailable)",
            retry_after=self._health.probe_interval_s,
        )

    async def create(
        self,
        name: str,
        tenant: str,
        rpm_limit: int | None = None,
        tpm_limit: int | None = None,
        budget_usd: float | None = None,
        routing_defaults: dict[str, Any] | None = None,
    ) -> tuple[str, ApiKeyRecord]:
        """Create a key; returns ``(plaintext_key, record)``. The plaintext is not kept anywhere.

        Raises ValueError for invalid arguments, :class:`StateUnavailableError` when Redis fails.
        """
        if not name.strip() or len(name) > 200:
            raise ValueError("name must be 1-200 characters")
        if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,128}", tenant):
            raise ValueError("tenant must be 1-128 characters of letters, digits, '_', '.', ':', '-'")
        for label, limit in (("rpm_limit", rpm_limit), ("tpm_limit", tpm_limit)):
            if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
                raise ValueError(f"{label} must be a positive integer")
        if budget_usd is not None and not (math.isfinite(budget_usd) and budget_usd >= 0):
            raise ValueError("budget_usd must be a finite number >= 0")
        defaults = json.dumps(routing_defaults or {}, sort_keys=True)
        if len(defaults) > _MAX_ROUTING_DEFAULTS_BYTES:
            raise ValueError("routing_defaults is too large")
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        record = ApiKeyRecord(
            key_id=key_id,
            name=name,
            tenant=tenant,
            created_at=time.time(),
            rpm_limit=rpm_limit,
            tpm_limit=tpm_limit,
            budget_usd=budget_usd,
            routing_defaults=json.loads(defaults),
        )
        fields: dict[EncodableT, EncodableT] = {
            "name": name,
            "tenant": tenant,
            "created_at": repr(record.created_at),
            "hash": self._digest(key_id, secret),
            "hash_scheme": "hmac-sha256:v1",
            "routing_defaults": defaults,
        }
        if rpm_limit is not None:
            fields["rpm_limit"] = str(rpm_limit)
        if tpm_limit is not None:
            fields["tpm_limit"] = str(tpm_limit)
        if budget_usd is not None:
            fields["budget_usd"] = repr(float(budget_usd))
        try:
            # Record first, then the index: a crash in between leaves a working but
            # unlisted key rather than a listed key that does not exist.
            await self._client.hset(self._keys.api_key_record(key_id), mapping=fields)
            await self._client.sadd(self._keys.api_key_index(), key_id)
        except REDIS_FAILURES as exc:
            raise self._unavailable(exc) from None
        self._health.record_success()
        return format_api_key(key_id, secret), record

    async def verify(self, plaintext: str) -> ApiKeyRecord | None:
        """The record of a valid, unrevoked key; None for anything else.

        Raises :class:`StateUnavailableError` only when Redis is unreachable and the key
        cannot be decided from this replica's cache (see ``AuthConfig.fail_open_when_redis_down``).
        """
        parsed = parse_api_key(plaintext)
        if parsed is None:
            return None
        key_id, secret = parsed
        digest = self._digest(key_id, secret)
        cached = self._verified.get(key_id)
        known = cached is not None and hmac.compare_digest(cached.digest, digest)
        age = self._clock() - cached.verified_at if cached is not None else 0.0
        if cached is not None and known and age < self._config.cache_ttl_s:
            return cached.record
        failure: BaseException | None = None
        fields: dict[str, str] | None = None
        if self._health.allow_attempt():
            try:
                fields = _decode(await self._client.hgetall(self._keys.api_key_record(key_id)))
            except REDIS_FAILURES as exc:
                failure = exc
        if fields is None:
            if failure is not None:
                self._health.record_failure(failure)
            fail_open = self._config.fail_open_when_redis_down
            if cached is not None and known and fail_open and age < self._config.stale_ttl_s:
                return cached.record
            raise self._unavailable()
        self._health.record_success()
        stored = fields.get("hash", "")
        # compare_digest on equal-length hex strings: the time taken says nothing about
        # how much of the secret was right.
        if not fields or not hmac.compare_digest(stored.encode(), digest.encode()):
            return None
        record = _record(key_id, fields)
        if record.revoked:
            self._verified.pop(key_id, None)
            return None
        self._remember(key_id, digest, record)
        return record

    def _remember(self, key_id: str, digest: str, record: ApiKeyRecord) -> None:
        self._verified[key_id] = _Verified(digest, record, self._clock())
        self._verified.move_to_end(key_id)
        while len(self._verified) > self._config.cache_max_keys:
            self._verified.popitem(last=False)

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        """The record of ``key_id`` (revoked or not), or None."""
        try:
            fields = _decode(await self._client.hgetall(self._keys.api_key_record(key_id)))
        except REDIS_FAILURES as exc:
            raise self._unavailable(exc) from None
        except ValueError:
            return None
        self._health.record_success()
        return _record(key_id, fields) if fields else None

    async def list(self, tenant: str | None = None) -> builtins.list[ApiKeyRecord]:
        """Every key's record (oldest first), revoked ones included; optionally one tenant's."""
        try:
            ids = sorted(_str(m) for m in await self._client.smembers(self._keys.api_key_index()))
            pipe = self._client.pipeline(transaction=False)
            for key_id in ids:
                pipe.hgetall(self._keys.api_key_record(key_id))
            rows = await pipe.execute()
        except REDIS_FAILURES as exc:
            raise self._unavailable(exc) from None
        self._health.record_success()
        records = [_record(key_id, _decode(raw)) for key_id, raw in zip(ids, rows, strict=True) if raw]
        if tenant is not None:
            records = [r for r in records if r.tenant == tenant]
        return sorted(records, key=lambda r: (r.created_at, r.key_id))

    async def revoke(self, key_id: str) -> bool:
        """Revoke ``key_id``; False when there is no such key. Revoking twice keeps the first time."""
        try:
            record_key = self._keys.api_key_record(key_id)
        except ValueError:
            return False
        try:
            if not await self._client.exists(record_key):
                self._health.record_success()
                return False
            await self._client.hsetnx(record_key, "revoked_at", repr(time.time()))
        except REDIS_FAILURES as exc:
            raise self._unavailable(exc) from None
        self._health.record_success()
        self._verified.pop(key_id, None)
        return True
