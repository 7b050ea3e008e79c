"""The durable cost ledger: per-request integer increments in Redis, summaries back out.

Write path: :meth:`Ledger.record` turns a :class:`~gateway.accounting.cost.RequestCost`
into :class:`~gateway.accounting.layout.HashIncrement` operations (a pure function of
the request and its time) and hands them to a :class:`LedgerWriter`. The default
writer applies them with HINCRBY inside one MULTI/EXEC, so a request is counted whole
or not at all; a buffering writer can sit in front of it during a Redis outage and
replay the same operations later (they carry their own hour, so replays land in the
right bucket).

Every replica writes to the same Redis, so totals are cluster-wide by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from gateway.accounting.config import LedgerConfig
from gateway.accounting.cost import RequestCost
from gateway.accounting.layout import HashIncrement, LedgerLayout, ensure_utc
from gateway.accounting.summary import LedgerSummary, SeriesCounts, merge, parse_bucket, summarize

__all__ = ["Ledger", "LedgerWriter", "RedisLedgerWriter"]

Clock = Callable[[], datetime]


class LedgerWriter(Protocol):
    """Applies a batch of ``(key, field, increment)`` operations atomically."""

    async def write(self, ops: Sequence[HashIncrement]) -> None:
        """Apply every operation of one request, or none of them."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class RedisLedgerWriter:
    """HINCRBY every operation inside one MULTI/EXEC pipeline (one round trip).

    ``ttl_for`` gives each key's retention; the EXPIRE is refreshed in the same
    transaction, so a bucket lives that long after its last write.
    """

    def __init__(self, client: Any, *, ttl_for: Callable[[str], int | None] | None = None) -> None:
        # ``client`` is a ``redis.asyncio.Redis`` (or ``RedisCluster``): anything with
        # ``pipeline(transaction=True)``.
        self._client = client
        self._ttl_for = ttl_for

    async def write(self, ops: Sequence[HashIncrement]) -> None:
        """Apply ``ops`` in one transaction."""
        if not ops:
            return
        async with self._client.pipeline(transaction=True) as pipe:
            for key, field, amount in ops:
                pipe.hincrby(key, field, amount)
            if self._ttl_for is not None:
                for key in dict.fromkeys(op.key for op in ops):
                    ttl = self._ttl_for(key)
                    if ttl is not None:
                        pipe.expire(key, ttl)
            await pipe.execute()


class Ledger:
    """Records request costs in Redis and answers "what did we spend and save since …?"."""

    def __init__(
        self,
        client: Any,
        *,
        layout: LedgerLayout | None = None,
        writer: LedgerWriter | None = None,
        clock: Clock | None = None,
    ) -> None:
        """``client`` (a ``redis.asyncio.Redis``) serves reads, and writes unless ``writer`` is given."""
        self._client = client
        self._layout = layout or LedgerLayout()
        self._writer: LedgerWriter = writer or RedisLedgerWriter(client, ttl_for=self._layout.ttl_for)
        self._clock = clock or _utc_now

    @classmethod
    def from_config(
        cls, client: Any, config: LedgerConfig, *, writer: LedgerWriter | None = None, clock: Clock | None = None
    ) -> Ledger:
        """A ledger with the configured key prefix and retention."""
        return cls(client, layout=LedgerLayout.from_config(config), writer=writer, clock=clock)

    @property
    def layout(self) -> LedgerLayout:
        """Key layout (also the ``ttl_for`` a buffering writer should pass on)."""
        return self._layout

    def ops(
        self, cost: RequestCost, *, tier: str, model: str, key_id: str | None = None, at: datetime | None = None
    ) -> list[HashIncrement]:
        """The increments for one request, without writing them (``at`` defaults to now)."""
        return self._layout.ops(cost, tier=tier, model=model, key_id=key_id, at=at or self._clock())

    async def record(
        self, cost: RequestCost, *, tier: str, model: str, key_id: str | None = None, at: datetime | None = None
    ) -> list[HashIncrement]:
        """Write one request's cost; returns the operations written.

        ``tier`` is the tier that answered, ``model`` the concrete model reported to the
        client, ``key_id`` a non-secret tenant or API-key id (see
        :func:`gateway.accounting.identity.key_id_from_secret`).
        """
        ops = self.ops(cost, tier=tier, model=model, key_id=key_id, at=at)
        await self._writer.write(ops)
        return ops

    async def _read(self, keys: Sequence[str]) -> list[SeriesCounts]:
        if not keys:
            return []
        # One round trip; no transaction needed for reads of whole counters.
        async with self._client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            replies: list[Any] = await pipe.execute()
        merged = merge(parse_bucket(reply or {}) for reply in replies)
        return [SeriesCounts(series, counts) for series, counts in sorted(merged.items())]

    async def series(self, since: datetime, until: datetime | None = None) -> list[SeriesCounts]:
        """Counts per (tier, model, key id) over whole UTC hours from ``since`` to ``until`` (default now)."""
        end = until if until is not None else self._clock()
        return await self._read(self._layout.range_keys(since, end))

    async def summary(self, since: datetime | timedelta, until: datetime | None = None) -> LedgerSummary:
        """Rows by tier, model and key (requests, tokens, cost, baseline, savings, savings %).

        ``since`` is a datetime (naive means UTC) or a look-back such as
        ``timedelta(hours=1)``. Buckets are hourly, so the range starts at the top of
        ``since``'s hour and ends at the end of ``until``'s hour.
        """
        end = ensure_utc(until if until is not None else self._clock())
        start = ensure_utc(end - since if isinstance(since, timedelta) else since)
        rows = await self._read(self._layout.range_keys(start, end))
        first = start.replace(minute=0, second=0, microsecond=0)
        last = end.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        return summarize({r.series: r.counts for r in rows}, first, last)

    async def totals(self) -> list[SeriesCounts]:
        """All-time counts per (tier, model, key id): the source of the Prometheus counters."""
        return await self._read([self._layout.total_key()])
