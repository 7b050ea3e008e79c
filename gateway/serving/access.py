"""Who may call, how often, and the admin credential: API keys and rate limits in Redis.

The HTTP layer hands over raw header values; this module answers with a :class:`Caller`
or one of the gateway's errors (401, 403, 429, 503). Secrets never leave this module:
a :class:`Caller` carries the key id and tenant only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.errors import AuthenticationError, PermissionDeniedError, RateLimitError
from gateway.state import (
    ApiKeyRecord,
    RateDecision,
    StateStore,
    StateUnavailableError,
    estimate_tokens,
    parse_bearer,
    read_secret_env,
    verify_admin,
)

__all__ = ["ANONYMOUS", "AccessControl", "Admission", "Caller"]


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated caller (no secret inside)."""

    key_id: str | None
    tenant: str
    name: str | None = None
    record: ApiKeyRecord | None = None


#: The caller when authentication is off (local profile). The tenant may come from a header.
ANONYMOUS = Caller(key_id=None, tenant="default")


@dataclass(frozen=True, slots=True)
class Admission:
    """A rate-limit admission, settled with the real token count after the response."""

    caller: Caller
    decision: RateDecision | None
    tpm: int | None

    def headers(self) -> dict[str, str]:
        """``x-ratelimit-*`` headers for the response."""
        return self.decision.headers() if self.decision is not None else {}


class AccessControl:
    """API-key authentication, the admin credential and per-key rate limits."""

    def __init__(self, store: StateStore | None, environ: Mapping[str, str] | None = None) -> None:
        self._store = store
        env = os.environ if environ is None else environ
        self._auth_enabled = store is not None and store.config.auth.enabled
        self._admin_key = read_secret_env(store.config.auth.admin_key_env if store else "SLM_ROUTER_ADMIN_KEY", env)

    @property
    def auth_enabled(self) -> bool:
        """Whether ``/v1`` requests need an API key."""
        return self._auth_enabled

    async def authenticate(self, authorization: str | None, tenant_header: str | None = None) -> Caller:
        """The caller behind an ``Authorization`` header; 401 for a missing, unknown or revoked key."""
        if not self._auth_enabled or self._store is None:
            tenant = (tenant_header or "").strip()[:64] or ANONYMOUS.tenant
            return Caller(key_id=None, tenant=tenant)
        token = parse_bearer(authorization)
        if token is None:
            raise AuthenticationError(
                "You didn't provide an API key. Send it as 'Authorization: Bearer sk-slm-...'.", code="missing_api_key"
            )
        record = await self._store.api_keys.verify(token)  # StateUnavailableError (503) passes through
        if record is None:
            raise AuthenticationError("Incorrect API key provided.")
        return Caller(key_id=record.key_id, tenant=record.tenant, name=record.name, record=record)

    def require_admin(self, authorization: str | None) -> None:
        """403 unless the header carries the admin credential (compared in constant time)."""
        if self._admin_key is None:
            raise PermissionDeniedError(
                "the admin API is disabled: set the admin credential in the environment of the gateway",
                code="admin_disabled",
            )
        if not verify_admin(parse_bearer(authorization), self._admin_key):
            raise PermissionDeniedError("this endpoint needs the admin credential")

    async def admit(self, caller: Caller, request: Mapping[str, Any], default_max_tokens: int) -> Admission:
        """Consume one request and an estimate of its tokens from the caller's limits (429 when over)."""
        if self._store is None or caller.record is None:
            return Admission(caller, None, None)
        limiter = self._store.rate_limiter
        rpm, tpm = limiter.limits_for(caller.record)
        if rpm is None and tpm is None:
            return Admission(caller, None, None)
        decision = await limiter.check_and_consume(
            caller.record.key_id, rpm, tpm, estimate_tokens(request, default_max_tokens)
        )
        if not decision.allowed:
            if decision.degraded:
                raise StateUnavailableError("rate limits cannot be checked right now", retry_after=2)
            limit = "requests" if decision.limited_by == "rpm" else "tokens"
            raise RateLimitError(
                f"Rate limit reached for {limit} per minute on this key; retry in {decision.retry_after_s:.1f}s.",
                retry_after=max(decision.retry_after_s, 0.001),
            )
        return Admission(caller, decision, tpm)

    async def settle(self, admission: Admission, total_tokens: int) -> None:
        """Charge the difference between the estimate and the real token count."""
        if self._store is None or admission.decision is None or admission.caller.key_id is None:
            return
        await self._store.rate_limiter.record_tokens(
            admission.caller.key_id, admission.tpm, total_tokens, admission.decision.tokens_charged
        )
