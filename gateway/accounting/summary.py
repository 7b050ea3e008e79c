"""Ledger read models: counts per series, summary rows by tier, model and key.

Everything here is plain arithmetic on the integers the ledger stores; the USD floats
and percentages are derived at the edge, so totals always agree with the rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from gateway.accounting.cost import CostFigures, format_usd
from gateway.accounting.layout import METRICS, SeriesKey, decode_field

__all__ = ["Counts", "Group", "LedgerSummary", "SeriesCounts", "SummaryRow", "parse_bucket", "summarize"]

Group = Literal["tier", "model", "key", "total"]


@dataclass(frozen=True, slots=True)
class Counts(CostFigures):
    """Summed ledger counters (integers: exact)."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_nanos: int = 0
    baseline_nanos: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.requests + other.requests,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cost_nanos + other.cost_nanos,
            self.baseline_nanos + other.baseline_nanos,
        )


@dataclass(frozen=True, slots=True)
class SeriesCounts:
    """Counts of one (tier, model, key id) series."""

    series: SeriesKey
    counts: Counts


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """One table row: a tier, model or key (or the total) over a time range."""

    group: Group
    name: str
    counts: Counts

    def as_dict(self) -> dict[str, object]:
        """JSON-ready row."""
        c = self.counts
        return {
            "group": self.group,
            "name": self.name,
            "requests": c.requests,
            "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens,
            "cost_usd": c.cost_usd,
            "baseline_usd": c.baseline_usd,
            "savings_usd": c.savings_usd,
            "savings_pct": c.savings_pct,
        }


@dataclass(frozen=True, slots=True)
class LedgerSummary:
    """Cost and savings over ``[since, until]`` (whole UTC hours), by tier, model and key."""

    since: datetime
    until: datetime
    by_tier: list[SummaryRow] = field(default_factory=list)
    by_model: list[SummaryRow] = field(default_factory=list)
    by_key: list[SummaryRow] = field(default_factory=list)
    total: SummaryRow = field(default_factory=lambda: SummaryRow("total", "total", Counts()))

    def rows(self) -> list[SummaryRow]:
        """Every row: tiers, models, keys, then the total."""
        return [*self.by_tier, *self.by_model, *self.by_key, self.total]

    def as_table(self) -> str:
        """A fixed-width text table for CLIs and logs."""
        header = f"{'group':<6} {'name':<32} {'requests':>9} {'prompt':>11} {'completion':>11} "
        header += f"{'cost_usd':>16} {'baseline_usd':>16} {'savings_usd':>16} {'savings%':>8}"
        lines = [header]
        for row in self.rows():
            c = row.counts
            pct = "-" if c.savings_pct is None else f"{c.savings_pct:.1f}"
            lines.append(
                f"{row.group:<6} {row.name[:32]:<32} {c.requests:>9} {c.prompt_tokens:>11} {c.completion_tokens:>11} "
                f"{format_usd(c.cost_nanos):>16} {format_usd(c.baseline_nanos):>16} "
                f"{format_usd(c.savings_nanos):>16} {pct:>8}"
            )
        return "\n".join(lines)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def parse_bucket(raw: Mapping[Any, Any]) -> dict[SeriesKey, Counts]:
    """Counts per series from one HGETALL reply (bytes or str); unknown fields are ignored."""
    values: dict[SeriesKey, dict[str, int]] = {}
    for raw_field, raw_value in raw.items():
        decoded = decode_field(_text(raw_field))
        if decoded is None or decoded[1] not in METRICS:
            continue
        series, metric = decoded
        values.setdefault(series, {})[metric] = int(_text(raw_value))
    return {series: Counts(**metrics) for series, metrics in values.items()}


def merge(buckets: Iterable[Mapping[SeriesKey, Counts]]) -> dict[SeriesKey, Counts]:
    """Sum several buckets series by series."""
    merged: dict[SeriesKey, Counts] = {}
    for bucket in buckets:
        for series, counts in bucket.items():
            merged[series] = merged.get(series, Counts()) + counts
    return merged


def _rows(series: Mapping[SeriesKey, Counts], group: Group, name_of: Callable[[SeriesKey], str]) -> list[SummaryRow]:
    grouped: dict[str, Counts] = {}
    for key, counts in series.items():
        name = name_of(key)
        grouped[name] = grouped.get(name, Counts()) + counts
    # Most expensive first: the rows people look at.
    ordered = sorted(grouped.items(), key=lambda item: (-item[1].cost_nanos, item[0]))
    return [SummaryRow(group, name, counts) for name, counts in ordered]


def summarize(series: Mapping[SeriesKey, Counts], since: datetime, until: datetime) -> LedgerSummary:
    """Group per-series counts into rows by tier, model and key id."""
    total = Counts()
    for counts in series.values():
        total = total + counts
    return LedgerSummary(
        since=since,
        until=until,
        by_tier=_rows(series, "tier", lambda s: s.tier),
        by_model=_rows(series, "model", lambda s: s.model),
        by_key=_rows(series, "key", lambda s: s.key_id or "(none)"),
        total=SummaryRow("total", "total", total),
    )
