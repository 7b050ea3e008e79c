"""Ledger writes (integer ``HINCRBY`` ops) that survive a Redis outage.

Usage and spend counters must add up exactly, so amounts are integers (tokens,
nano-dollars) and nothing is dropped because Redis was briefly away:

* :meth:`BufferedWriter.add` never touches the network. It appends the ops to an
  in-process buffer (one entry per Redis key, increments of the same field summed while
  the entry waits), bounded by ``max_entries``; a background loop flushes it.
* :meth:`BufferedWriter.flush` sends the buffer in order, in pipelines. If Redis is down
  the entries stay and the loop retries with exponential backoff (and at once when
  another component sees Redis recover).
* Each entry is applied by a Lua script that records, per key and per writer, the last
  sequence number applied (in ``<key>:applied``). A pipeline cut off mid-way (reply lost
  after Redis executed some commands) is therefore re-sent without double counting:
  entries at or below the recorded number are skipped. This is what makes "totals exact"
  hold even when a timeout hides whether a write landed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import random
import secrets
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.state.errors import describe_error
from gateway.state.health import RedisHealth
from gateway.state.keys import KeySpace

__all__ = ["BufferedWriter", "LedgerOp"]

logger = logging.getLogger(__name__)

#: ``(key, field, increment)``: one ``HINCRBY``.
LedgerOp = tuple[str, str, int]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# KEYS[1]: ledger hash; KEYS[2]: its ":applied" marker hash (same hash tag, same slot).
# ARGV: writer id, sequence number, marker TTL (ms), ledger key TTL (s, 0: leave it),
# then field/increment pairs.
_APPLY_LUA = """
local last = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local seq = tonumber(ARGV[2])
if seq <= last then
  return 0
end
for i = 5, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
if tonumber(ARGV[4]) > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""

# Failures that mean "not sent / unknown whether sent": keep the entry and retry later.
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)


@dataclass
class _Entry:
    key: str
    fields: dict[str, int]
    seq: int


class BufferedWriter:
    """Ordered, bounded, idempotent buffer of ledger increments in front of Redis."""

    def __init__(
        self,
        client: Redis,
        health: RedisHealth,
        *,
        max_entries: int = 100_000,
        batch_size: int = 256,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        marker_ttl_s: float = 86_400.0,
        ttl_for: Callable[[str], int | None] | None = None,
    ) -> None:
        """``ttl_for(key)``: seconds a ledger key lives after its last write (None: no expiry)."""
        self._client = client
        self._ttl_for = ttl_for
        self._health = health
        self._max_entries = max_entries
        self._batch_size = batch_size
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._marker_ttl_ms = int(marker_ttl_s * 1000)
        # EVALSHA straight into the pipeline: a registered Script object would add a
        # SCRIPT EXISTS round trip to every flush. Redis forgets scripts on restart; a
        # NOSCRIPT answer reloads it and the batch is resent (the markers make that safe).
        self._script_sha = hashlib.sha1(_APPLY_LUA.encode()).hexdigest()
        # A fresh id per process: sequence numbers restart with it, so markers of an
        # earlier process never make this one skip anything.
        self._writer_id = secrets.token_hex(8)
        self._seq = itertools.count(1)
        self._entries: deque[_Entry] = deque()
        # Entries not yet sent, by key: only these may absorb new increments. An entry
        # that was sent (maybe applied) must keep its amounts, or a replay would be wrong.
        self._unsent: dict[str, _Entry] = {}
        self._dropped_ops = 0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        health.add_recovery_listener(self._wake.set)

    def set_ttl_for(self, ttl_for: Callable[[str], int | None] | None) -> None:
        """Set the retention policy (for example ``gateway.accounting`` ``LedgerLayout.ttl_for``)."""
        self._ttl_for = ttl_for

    @property
    def pending_entries(self) -> int:
        """Entries (keys with increments) waiting for Redis."""
        return len(self._entries)

    @property
    def dropped_ops(self) -> int:
        """Ops refused because the buffer was full, or rejected by Redis (both logged as errors)."""
        return self._dropped_ops

    def add(self, ops: Iterable[LedgerOp]) -> bool:
        """Buffer ``ops`` for the next flush; never blocks, never raises for Redis.

        All-or-nothing: returns False (and logs) when the buffer has no room for the new
        keys. Raises ValueError for malformed ops (a programming error).
        """
        by_key: dict[str, dict[str, int]] = {}
        for key, field, amount in ops:
            if not key or not field:
                raise ValueError("ledger ops need a key and a field")
            if isinstance(amount, bool) or not isinstance(amount, int):
                raise ValueError("ledger increments must be int (use integer units such as nano-dollars)")
            if not _INT64_MIN <= amount <= _INT64_MAX:
                raise ValueError("ledger increment out of the 64-bit range")
            if amount:
                fields = by_key.setdefault(key, {})
                fields[field] = fields.get(field, 0) + amount
        new_keys = [key for key in by_key if key not in self._unsent]
        if len(self._entries) + len(new_keys) > self._max_entries:
            self._dropped_ops += sum(len(by_key[k]) for k in new_keys)
            logger.error(
                "ledger buffer full (%d entries, redis degraded=%s): %d key(s) of increments dropped",
                len(self._entries),
                self._health.degraded,
                len(new_keys),
            )
            return False
        for key, fields in by_key.items():
            entry = self._unsent.get(key)
            if entry is None:
                entry = _Entry(key=key, fields={}, seq=next(self._seq))
                self._entries.append(entry)
                self._unsent[key] = entry
            for field, amount in fields.items():
                entry.fields[field] = entry.fields.get(field, 0) + amount
        if by_key:
            self._wake.set()
        return True

    async def write(self, ops: Iterable[LedgerOp]) -> None:
        """:meth:`add`, then flush now unless Redis is known to be down (the loop retries then).

        Never raises for Redis: what cannot be sent stays buffered. This matches the
        ``LedgerWriter`` protocol of :mod:`gateway.accounting.ledger`, so a
        ``BufferedWriter`` can be that ledger's writer.
        """
        if self.add(ops) and self._health.allow_attempt():
            await self.flush()

    async def flush(self) -> bool:
        """Send every buffered entry in order; True when the buffer is empty afterwards.

        Stops at the first connection failure (the rest stays buffered, in order) and
        reports it to :class:`RedisHealth`; never raises for Redis errors.
        """
        async with self._lock:
            while self._entries:
                # While Redis is known to be down, PING first: a failed PING proves
                # nothing was sent, so the entries stay unsent and keep absorbing new
                # increments (the buffer grows with keys, not with retries).
                if self._health.degraded and not await self._health.ping():
                    return False
                batch = list(itertools.islice(self._entries, self._batch_size))
                if not await self._send(batch):
                    return False
                self._health.record_success()
            return True

    async def _send(self, batch: list[_Entry]) -> bool:
        # From here on an entry may land in Redis even if we see an error: freeze it.
        for entry in batch:
            if self._unsent.get(entry.key) is entry:
                del self._unsent[entry.key]
        results = await self._execute(batch)
        if results is not None and any(isinstance(r, NoScriptError) for r in results):
            try:
                await self._client.script_load(_APPLY_LUA)
            except _UNAVAILABLE as exc:
                self._health.record_failure(exc)
                return False
            results = await self._execute(batch)
        if results is None:
            return False
        for entry, result in zip(batch, results, strict=True):
            if isinstance(result, _UNAVAILABLE):
                self._health.record_failure(result)
                return False
            if isinstance(result, Exception):
                # WRONGTYPE, overflow...: retrying can never succeed, and keeping it
                # would block every later entry. Drop it loudly.
                self._dropped_ops += len(entry.fields)
                logger.error(
                    "ledger entry for %s rejected by redis, dropped %s: %s",
                    entry.key,
                    entry.fields,
                    describe_error(result),
                )
            self._entries.popleft()
        return True

    async def _execute(self, batch: list[_Entry]) -> list[object] | None:
        """One pipeline of EVALSHAs; None when Redis failed as a whole (recorded as such)."""
        async with self._client.pipeline(transaction=False) as pipe:
            for entry in batch:
                ttl = self._ttl_for(entry.key) if self._ttl_for is not None else None
                args: list[str | int] = [self._writer_id, entry.seq, self._marker_ttl_ms, ttl or 0]
                for field, amount in entry.fields.items():
                    args += [field, amount]
                pipe.evalsha(self._script_sha, 2, entry.key, KeySpace.ledger_marker(entry.key), *args)
            try:
                return list(await pipe.execute(raise_on_error=False))
            except _UNAVAILABLE as exc:
                self._health.record_failure(exc)
            except RedisError as exc:
                # Not a lost connection but a whole-pipeline error we cannot attribute.
                self._health.record_failure(exc)
                logger.error("ledger flush failed: %s", describe_error(exc))
            return None

    def start(self) -> None:
        """Start the background flush loop (idempotent; needs a running event loop)."""
        if self._task is None or self._task.done():
            self._closed = False
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ledger-flush")

    async def _run(self) -> None:
        backoff = self._backoff_initial_s
        while not self._closed:
            if not self._entries:
                self._wake.clear()
                if not self._entries:
                    await self._wake.wait()
                continue
            try:
                ok = await self.flush()
            except Exception:
                logger.exception("ledger flush loop error")
                ok = False
            if ok:
                backoff = self._backoff_initial_s
                continue
            # Wait with jitter (replicas must not stampede a recovering Redis), but wake
            # at once when another component sees Redis come back.
            self._wake.clear()
            delay = backoff * (0.5 + random.random() / 2)
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass
            backoff = min(backoff * 2, self._backoff_max_s)

    async def aclose(self, flush_timeout_s: float = 2.0) -> None:
        """Stop the loop and try a last flush; what cannot be sent is logged as lost."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            async with asyncio.timeout(flush_timeout_s):
                await self.flush()
        except TimeoutError:
            pass
        if self._entries:
            logger.error("ledger closing with %d unsent entries (lost): redis unreachable", len(self._entries))
