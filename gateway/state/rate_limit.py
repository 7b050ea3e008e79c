"""Requests-per-minute and tokens-per-minute limits shared by every replica.

Algorithm: GCRA (the generic cell rate algorithm, a token bucket stored as one
timestamp). Per key and per limit Redis keeps a *theoretical arrival time* (TAT); a
request costing ``n`` units moves it by ``n * 60s / limit`` and is allowed while the TAT
stays within one minute of now. Why GCRA rather than a sliding window:

* O(1) state (two numbers per key in one hash), where a sliding-window log grows with
  the limit and is awkward for token counts (each entry would carry a weight);
* no burst at window boundaries, unlike fixed windows: a full minute's allowance can be
  spent at once, then it refills smoothly at ``limit`` per minute;
* ``Retry-After`` is exact: it is how far the TAT is past the window.

Both limits are checked and consumed by one Lua script on one key, so concurrent
requests on any number of replicas cannot overspend, and the script uses Redis's clock
(``TIME``), so replicas with skewed clocks agree. Tokens are charged twice: an estimate
before the call (:meth:`RateLimiter.check_and_consume`) and the difference once the
usage is known (:meth:`RateLimiter.record_tokens`), which may put the key in debt.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis

from gateway.state.api_keys import ApiKeyRecord
from gateway.state.errors import REDIS_FAILURES
from gateway.state.health import RedisHealth
from gateway.state.keys import KeySpace

__all__ = ["RateDecision", "RateLimiter", "estimate_tokens"]

logger = logging.getLogger(__name__)

_PERIOD_MS = 60_000.0

# KEYS[1]: the key's GCRA hash (fields r, t: request and token TATs in ms since epoch).
# ARGV: rpm (0: none), tpm (0: none), tokens, period (ms).
# Returns {allowed, retry_after_ms, remaining_requests, remaining_tokens, limited_by}
# with numbers as strings (Redis would truncate Lua floats to integers).
_CHECK_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local tokens, period = tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'r', 't')
local r_tat = math.max(tonumber(state[1]) or now, now)
local t_tat = math.max(tonumber(state[2]) or now, now)
-- Timestamps near 1.7e12 ms carry ~0.0002 ms of float rounding per addition; half a
-- millisecond of tolerance keeps an exact fill (5 of rpm=5) from being denied by rounding.
local tol = 0.5
local r_new, t_new = r_tat, t_tat
local wait, limited = 0, ''
if rpm > 0 then
  r_new = r_tat + period / rpm
  local over = r_new - now - period - tol
  if over > wait then wait, limited = over, 'rpm' end
end
if tpm > 0 then
  t_new = t_tat + tokens * period / tpm
  local over = t_new - now - period - tol
  if over > wait then wait, limited = over, 'tpm' end
end
local allowed = 0
if wait <= 0 then
  allowed = 1
  r_tat, t_tat = r_new, t_new
  redis.call('HSET', KEYS[1], 'r', string.format('%.17g', r_tat), 't', string.format('%.17g', t_tat))
  redis.call('PEXPIRE', KEYS[1], math.ceil(math.max(r_tat, t_tat) - now) + 1000)
end
local rem_r, rem_t = -1, -1
if rpm > 0 then rem_r = math.max(0, math.floor((now + period + tol - r_tat) * rpm / period)) end
if tpm > 0 then rem_t = math.max(0, math.floor((now + period + tol - t_tat) * tpm / period)) end
return {allowed, string.format('%.17g', wait), tostring(rem_r), tostring(rem_t), limited}
"""

# KEYS[1]: the key's GCRA hash. ARGV: tpm, token delta (may be negative), period (ms).
# A refund never moves the TAT before now: unused allowance does not accumulate.
_CHARGE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tpm, delta, period = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'r', 't')
local r_tat = tonumber(state[1]) or now
local t_tat = math.max(tonumber(state[2]) or now, now) + delta * period / tpm
if t_tat < now then t_tat = now end
redis.call('HSET', KEYS[1], 't', string.format('%.17g', t_tat))
redis.call('PEXPIRE', KEYS[1], math.ceil(math.max(r_tat, t_tat) - now) + 1000)
return string.format('%.17g', t_tat - now)
"""


def estimate_tokens(request: Mapping[str, Any], default_max_tokens: int) -> int:
    """A cheap upper-ish estimate of a chat request's tokens, charged before the call.

    About 4 characters per prompt token plus a few per message, plus the completion
    budget (``max_completion_tokens``/``max_tokens``, else ``default_max_tokens``) of each of
    the ``n`` choices. The real usage is charged afterwards with
    :meth:`RateLimiter.record_tokens`, so this only needs to be in the right range, not exact.
    """
    chars = 0
    messages = request.get("messages")
    count = 0
    if isinstance(messages, list):
        for message in messages:
            count += 1
            content = message.get("content") if isinstance(message, Mapping) else None
            if isinstance(content, str):
                chars += len(content)
            elif isinstance(content, list):
                chars += sum(len(p.get("text", "")) for p in content if isinstance(p, Mapping))
    completion = request.get("max_completion_tokens") or request.get("max_tokens") or default_max_tokens
    completion = completion if isinstance(completion, int) and not isinstance(completion, bool) else default_max_tokens
    choices = request.get("n")
    choices = choices if isinstance(choices, int) and not isinstance(choices, bool) and choices > 1 else 1
    return math.ceil(chars / 4) + 4 * count + max(0, completion) * choices


@dataclass(frozen=True)
class RateDecision:
    """Outcome of one rate-limit check."""

    allowed: bool
    #: Seconds until the request would be allowed (0 when allowed).
    retry_after_s: float = 0.0
    #: Requests / tokens left in the current minute after this one (None: no such limit).
    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    limit_requests: int | None = None
    limit_tokens: int | None = None
    #: Which limit denied the request.
    limited_by: Literal["rpm", "tpm"] | None = None
    #: Tokens charged by this check; pass to :meth:`RateLimiter.record_tokens` later.
    tokens_charged: int = 0
    #: True when Redis was unreachable and the fail-open/closed policy decided instead.
    degraded: bool = False

    def headers(self) -> dict[str, str]:
        """OpenAI-style ``x-ratelimit-*`` headers (plus ``Retry-After`` when denied)."""
        out: dict[str, str] = {}
        if self.limit_requests is not None:
            out["x-ratelimit-limit-requests"] = str(self.limit_requests)
            if self.remaining_requests is not None:
                out["x-ratelimit-remaining-requests"] = str(self.remaining_requests)
        if self.limit_tokens is not None:
            out["x-ratelimit-limit-tokens"] = str(self.limit_tokens)
            if self.remaining_tokens is not None:
                out["x-ratelimit-remaining-tokens"] = str(self.remaining_tokens)
        if not self.allowed and self.retry_after_s > 0:
            out["Retry-After"] = str(max(1, math.ceil(self.retry_after_s)))
        return out


class RateLimiter:
    """Per-key RPM/TPM limits enforced atomically in Redis (GCRA)."""

    def __init__(
        self,
        client: Redis,
        keys: KeySpace,
        health: RedisHealth,
        *,
        fail_open_when_redis_down: bool = True,
        default_rpm: int | None = None,
        default_tpm: int | None = None,
    ) -> None:
        self._default_rpm = default_rpm
        self._default_tpm = default_tpm
        self._keys = keys
        self._health = health
        self._fail_open = fail_open_when_redis_down
        self._check = client.register_script(_CHECK_LUA)
        self._charge = client.register_script(_CHARGE_LUA)

    def limits_for(self, record: ApiKeyRecord) -> tuple[int | None, int | None]:
        """``(rpm, tpm)`` of a key: its own limits, else the configured defaults."""
        rpm = record.rpm_limit if record.rpm_limit is not None else self._default_rpm
        tpm = record.tpm_limit if record.tpm_limit is not None else self._default_tpm
        return rpm, tpm

    def _degraded(self, rpm: int | None, tpm: int | None) -> RateDecision:
        # Fail closed: the HTTP layer should answer 503 (our outage), not 429.
        return RateDecision(
            allowed=self._fail_open,
            retry_after_s=0.0 if self._fail_open else self._health.probe_interval_s,
            limit_requests=rpm,
            limit_tokens=tpm,
            degraded=True,
        )

    async def check_and_consume(
        self, key_id: str, rpm: int | None, tpm: int | None, tokens_estimate: int = 0
    ) -> RateDecision:
        """Check both limits and, only if both pass, consume one request and ``tokens_estimate`` tokens.

        ``None`` (or a non-positive value) means no such limit; with neither, Redis is not
        touched. An estimate above ``tpm`` is charged as ``tpm`` (a request bigger than a
        minute's allowance can still run once the bucket is full; the rest is charged
        by :meth:`record_tokens` as debt). Never raises for Redis failures.
        """
        rpm = rpm if rpm is not None and rpm > 0 else None
        tpm = tpm if tpm is not None and tpm > 0 else None
        if rpm is None and tpm is None:
            return RateDecision(allowed=True)
        tokens = min(max(0, tokens_estimate), tpm) if tpm is not None else 0
        key = self._keys.rate_limit(key_id)
        if not self._health.allow_attempt():
            return self._degraded(rpm, tpm)
        try:
            raw = await self._check(keys=[key], args=[rpm or 0, tpm or 0, tokens, _PERIOD_MS])
        except REDIS_FAILURES as exc:
            self._health.record_failure(exc)
            return self._degraded(rpm, tpm)
        self._health.record_success()
        allowed, wait_ms, rem_r, rem_t, limited = (v.decode() if isinstance(v, bytes) else str(v) for v in raw)
        is_allowed = allowed == "1"
        return RateDecision(
            allowed=is_allowed,
            retry_after_s=0.0 if is_allowed else max(0.001, float(wait_ms) / 1000.0),
            remaining_requests=None if rpm is None else int(rem_r),
            remaining_tokens=None if tpm is None else int(rem_t),
            limit_requests=rpm,
            limit_tokens=tpm,
            limited_by="rpm" if limited == "rpm" else "tpm" if limited == "tpm" else None,
            tokens_charged=tokens if is_allowed else 0,
        )

    async def record_tokens(self, key_id: str, tpm: int | None, actual_tokens: int, charged_tokens: int = 0) -> bool:
        """Charge ``actual_tokens - charged_tokens`` against the TPM limit (a refund when negative).

        Call once per request after the usage is known, with the decision's
        ``tokens_charged``. Best effort: returns False when Redis is unreachable (rate
        state is short-lived, unlike the ledger, so it is not buffered).
        """
        if tpm is None or tpm <= 0:
            return True
        delta = actual_tokens - charged_tokens
        if delta == 0:
            return True
        if not self._health.allow_attempt():
            return False
        try:
            await self._charge(keys=[self._keys.rate_limit(key_id)], args=[tpm, delta, _PERIOD_MS])
        except REDIS_FAILURES as exc:
            self._health.record_failure(exc)
            return False
        self._health.record_success()
        return True
