"""Redis key and field layout of the ledger, and the pure function that makes its writes.

Every request becomes a list of ``(key, field, increment)`` operations
(:class:`HashIncrement`) on three hashes:

* ``{<prefix>}:h:YYYYMMDDHH``: the UTC hour the request finished in;
* ``{<prefix>}:d:YYYYMMDD``: the UTC day (rollup, so long ranges read few keys);
* ``{<prefix>}:total``: all-time totals, read by the Prometheus collector.

Each hash has one field per (tier, model, key id, metric), written as
``tier|model|key_id|metric`` with ``%`` and ``|`` percent-encoded inside the parts
(so ``small|smollm2-135m-instruct|key_3fa2|cost_nanos``). Summaries by tier, model
or key are sums over those fields, read with one HGETALL per bucket.

The ``{<prefix>}`` hash tag puts the whole ledger in one Redis Cluster slot. That is
what lets one request's 15 increments run as one MULTI on a cluster (keys of a
transaction must share a slot); one shard absorbs tens of thousands of such
transactions a second, far above an LLM gateway's request rate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from urllib.parse import unquote

from gateway.accounting.config import LedgerConfig
from gateway.accounting.cost import RequestCost

__all__ = [
    "METRICS",
    "HashIncrement",
    "LedgerLayout",
    "SeriesKey",
    "decode_field",
    "encode_field",
    "ensure_utc",
]

#: Counters kept per series; savings are derived (baseline - cost) when read.
METRICS = ("requests", "prompt_tokens", "completion_tokens", "cost_nanos", "baseline_nanos")

_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)


class HashIncrement(NamedTuple):
    """One ``HINCRBY key field amount``: the unit a ledger writer (or a buffer) applies."""

    key: str
    field: str
    amount: int


class SeriesKey(NamedTuple):
    """The dimensions one ledger series is kept under (``key_id`` empty when unknown)."""

    tier: str
    model: str
    key_id: str


def _escape(part: str) -> str:
    return part.replace("%", "%25").replace("|", "%7C")


def encode_field(series: SeriesKey, metric: str) -> str:
    """``tier|model|key_id|metric`` with each part escaped."""
    return "|".join((_escape(series.tier), _escape(series.model), _escape(series.key_id), metric))


def decode_field(field: str) -> tuple[SeriesKey, str] | None:
    """The inverse of :func:`encode_field`; ``None`` for a field of another shape."""
    parts = field.split("|")
    if len(parts) != 4:
        return None
    tier, model, key_id, metric = (unquote(p) for p in parts)
    return SeriesKey(tier, model, key_id), metric


def ensure_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _floor_hour(moment: datetime) -> datetime:
    return ensure_utc(moment).replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True, slots=True)
class LedgerLayout:
    """Key names, retention and the request-to-increments mapping of one ledger."""

    prefix: str = "slm-router:acct"
    hourly_ttl_s: int = 35 * 86_400
    daily_ttl_s: int = 800 * 86_400

    @classmethod
    def from_config(cls, config: LedgerConfig) -> LedgerLayout:
        """The layout a :class:`LedgerConfig` describes."""
        return cls(config.key_prefix, config.hourly_retention_days * 86_400, config.daily_retention_days * 86_400)

    @property
    def tag(self) -> str:
        """The Redis Cluster hash tag every key starts with."""
        return "{" + self.prefix + "}"

    def hour_key(self, moment: datetime) -> str:
        """Hash of the UTC hour containing ``moment``."""
        return f"{self.tag}:h:{ensure_utc(moment):%Y%m%d%H}"

    def day_key(self, moment: datetime) -> str:
        """Hash of the UTC day containing ``moment``."""
        return f"{self.tag}:d:{ensure_utc(moment):%Y%m%d}"

    def total_key(self) -> str:
        """Hash of the all-time totals."""
        return f"{self.tag}:total"

    def ttl_for(self, key: str) -> int | None:
        """Seconds a key should live after a write (``None``: forever)."""
        if key.startswith(f"{self.tag}:h:"):
            return self.hourly_ttl_s
        if key.startswith(f"{self.tag}:d:"):
            return self.daily_ttl_s
        return None

    def ops(self, cost: RequestCost, *, tier: str, model: str, key_id: str | None, at: datetime) -> list[HashIncrement]:
        """The increments that record one request (pure: no I/O, no clock)."""
        series = SeriesKey(tier, model, key_id or "")
        values = (1, cost.prompt_tokens, cost.completion_tokens, cost.cost_nanos, cost.baseline_nanos)
        fields = [(encode_field(series, metric), value) for metric, value in zip(METRICS, values, strict=True)]
        keys = (self.hour_key(at), self.day_key(at), self.total_key())
        # Zero increments are kept: a request with no tokens still counts as a request,
        # and a fixed shape makes buffered batches easy to reason about.
        return [HashIncrement(key, field, value) for key in keys for field, value in fields]

    def range_keys(self, since: datetime, until: datetime) -> list[str]:
        """Bucket keys covering the whole hours from ``since`` to ``until`` (both inclusive).

        Whole UTC days inside the range read one daily rollup instead of 24 hours.
        ``since`` is rounded down to its hour: buckets are hourly.
        """
        end = _floor_hour(until) + _HOUR
        # Nothing older than the daily retention exists; clamping keeps datetime.min cheap.
        start = max(_floor_hour(since), end - timedelta(seconds=self.daily_ttl_s) - _DAY)
        keys: list[str] = []
        moment = start
        while moment < end:
            if moment.hour == 0 and moment + _DAY <= end:
                keys.append(self.day_key(moment))
                moment += _DAY
            else:
                keys.append(self.hour_key(moment))
                moment += _HOUR
        return keys

    def unique_keys(self, ops: Iterable[HashIncrement]) -> list[str]:
        """The distinct keys of ``ops``, in first-seen order."""
        return list(dict.fromkeys(op.key for op in ops))
