"""Routing and cost tallies of a load test, and the summary report built from them.

Standard library only (see ``prompts.py``). USD amounts are summed as :class:`~decimal.Decimal`
from the exact decimal strings the gateway sends, so the totals equal the sum of what
clients were told to the last nano-dollar.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

__all__ = ["LatencyStats", "Tally", "build_report", "format_report", "summary_path", "write_report"]

HEADER_TIER = "x-slm-router-tier"
HEADER_COST = "x-slm-router-cost-usd"
HEADER_BASELINE = "x-slm-router-baseline-usd"
HEADER_SAVINGS = "x-slm-router-savings-usd"
#: Tier name recorded when a response names none (a cache hit answers without a tier).
NO_TIER = "none"
LARGE_TIER = "large"


def _decimal(value: object) -> Decimal | None:
    if value is None:
        return None
    # str() of a float is its shortest round-tripping form: the gateway's 9-decimal figure.
    return value if isinstance(value, Decimal) else Decimal(str(value))


@dataclass
class Tally:
    """Counters of successful chat responses: tiers, labels routed large, and dollars."""

    requests: int = 0
    by_tier: dict[str, int] = field(default_factory=dict)
    by_label: dict[str, int] = field(default_factory=dict)
    large_by_label: dict[str, int] = field(default_factory=dict)
    priced: int = 0
    cost_usd: Decimal = Decimal(0)
    baseline_usd: Decimal = Decimal(0)
    savings_usd: Decimal = Decimal(0)

    def record(
        self,
        *,
        tier: str | None,
        label: str,
        cost: object = None,
        baseline: object = None,
        savings: object = None,
    ) -> None:
        """Count one response; ``cost``/``baseline``/``savings`` are header strings or usage numbers."""
        name = tier or NO_TIER
        self.requests += 1
        self.by_tier[name] = self.by_tier.get(name, 0) + 1
        self.by_label[label] = self.by_label.get(label, 0) + 1
        if name == LARGE_TIER:
            self.large_by_label[label] = self.large_by_label.get(label, 0) + 1
        figures = (_decimal(cost), _decimal(baseline), _decimal(savings))
        if figures[0] is not None:
            self.priced += 1
        self.cost_usd += figures[0] or 0
        self.baseline_usd += figures[1] or 0
        self.savings_usd += figures[2] or 0

    def record_headers(self, headers: Mapping[str, str], label: str) -> None:
        """Count a non-stream response from its ``x-slm-router-*`` headers."""
        self.record(
            tier=headers.get(HEADER_TIER),
            label=label,
            cost=headers.get(HEADER_COST),
            baseline=headers.get(HEADER_BASELINE),
            savings=headers.get(HEADER_SAVINGS),
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready counters (amounts as strings, exact); the inverse of :meth:`from_dict`."""
        return {
            "requests": self.requests,
            "by_tier": dict(self.by_tier),
            "by_label": dict(self.by_label),
            "large_by_label": dict(self.large_by_label),
            "priced": self.priced,
            "cost_usd": str(self.cost_usd),
            "baseline_usd": str(self.baseline_usd),
            "savings_usd": str(self.savings_usd),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tally:
        """Counters sent by :meth:`as_dict` (a Locust worker's report)."""
        return cls(
            requests=int(data["requests"]),
            by_tier={str(k): int(v) for k, v in data["by_tier"].items()},
            by_label={str(k): int(v) for k, v in data["by_label"].items()},
            large_by_label={str(k): int(v) for k, v in data["large_by_label"].items()},
            priced=int(data["priced"]),
            cost_usd=Decimal(data["cost_usd"]),
            baseline_usd=Decimal(data["baseline_usd"]),
            savings_usd=Decimal(data["savings_usd"]),
        )

    def merge(self, other: Tally) -> None:
        """Add ``other``'s counters to these."""
        self.requests += other.requests
        for mine, theirs in (
            (self.by_tier, other.by_tier),
            (self.by_label, other.by_label),
            (self.large_by_label, other.large_by_label),
        ):
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value
        self.priced += other.priced
        self.cost_usd += other.cost_usd
        self.baseline_usd += other.baseline_usd
        self.savings_usd += other.savings_usd


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """One Locust statistics entry, reduced to what the summary shows (milliseconds)."""

    requests: int
    failures: int
    p50_ms: float | None
    p95_ms: float | None
    avg_ms: float | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "requests": self.requests,
            "failures": self.failures,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "avg_ms": self.avg_ms,
        }


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def build_report(
    tally: Tally,
    latencies: Mapping[str, LatencyStats],
    *,
    settings: Mapping[str, Any],
    chat_entries: tuple[str, ...] = ("chat", "chat-stream"),
) -> dict[str, Any]:
    """The run summary: requests, failures, latency per entry, large share, savings, routing quality.

    ``latencies`` maps entry labels (``"POST chat"``, ``"chat tier:small"``, ``"TTFT chat-stream"``)
    to their statistics; the chat entries among them (``POST <name>``) give the failure count.
    """
    chat = [latencies[f"POST {name}"] for name in chat_entries if f"POST {name}" in latencies]
    sent = sum(s.requests for s in chat)
    failures = sum(s.failures for s in chat)
    large = tally.by_tier.get(LARGE_TIER, 0)
    savings_pct = float(100 * tally.savings_usd / tally.baseline_usd) if tally.baseline_usd else None
    return {
        "settings": dict(settings),
        "requests": sent,
        "failures": failures,
        "fail_ratio": _share(failures, sent),
        "successful": tally.requests,
        "by_tier": dict(sorted(tally.by_tier.items())),
        "large_share": _share(large, tally.requests),
        "cost": {
            "priced_requests": tally.priced,
            "cost_usd": str(tally.cost_usd),
            "baseline_usd": str(tally.baseline_usd),
            "savings_usd": str(tally.savings_usd),
            "savings_pct": savings_pct,
        },
        "routing_quality": {
            label: {
                "requests": count,
                "to_large": tally.large_by_label.get(label, 0),
                "large_share": _share(tally.large_by_label.get(label, 0), count),
            }
            for label, count in sorted(tally.by_label.items())
        },
        "latency": {name: stats.as_dict() for name, stats in sorted(latencies.items())},
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def format_report(report: Mapping[str, Any]) -> str:
    """A short human-readable rendering of :func:`build_report`'s result."""
    cost = report["cost"]
    savings_pct = "-" if cost["savings_pct"] is None else f"{cost['savings_pct']:.1f}%"
    lines = [
        "slm-router load-test summary",
        f"  requests {report['requests']}  failures {report['failures']}  fail ratio {_pct(report['fail_ratio'])}",
        f"  tiers {report['by_tier']}  large share {_pct(report['large_share'])}",
        f"  cost ${cost['cost_usd']}  baseline ${cost['baseline_usd']}  savings ${cost['savings_usd']} ({savings_pct})",
    ]
    for label, quality in report["routing_quality"].items():
        lines.append(
            f"  {label} prompts: {quality['requests']}, to large {quality['to_large']} ({_pct(quality['large_share'])})"
        )
    lines.append(f"  {'entry':<28} {'requests':>8} {'failures':>8} {'p50 ms':>8} {'p95 ms':>8}")
    for name, stats in report["latency"].items():
        lines.append(
            f"  {name:<28} {stats['requests']:>8} {stats['failures']:>8} {_ms(stats['p50_ms']):>8}"
            f" {_ms(stats['p95_ms']):>8}"
        )
    return "\n".join(lines)


def summary_path(csv_prefix: str | None) -> Path | None:
    """``<csv prefix>_slm_router.json``, next to Locust's CSV files (``None`` without ``--csv``)."""
    return Path(f"{csv_prefix}_slm_router.json") if csv_prefix else None


def write_report(report: Mapping[str, Any], path: Path) -> None:
    """Write ``report`` as indented JSON, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
