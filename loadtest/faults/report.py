"""What a fault run reports: a table of figures, the goals it checked, and notes.

Every fault prints its :class:`FaultReport` as markdown; ``run_all`` concatenates them and
adds a summary table. The figures come from the per-request :class:`Outcome` records.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from loadtest.faults.ledger import LedgerCheck
from loadtest.faults.load import Outcome

__all__ = ["Check", "FaultReport", "format_counts", "in_flight_at", "ledger_rows", "outcome_rows"]


@dataclass(frozen=True)
class Check:
    """One goal of the fault and whether the run met it."""

    goal: str
    passed: bool
    detail: str = ""


@dataclass
class FaultReport:
    """The result of one fault: figures (rows), goals (checks) and free-text notes."""

    name: str
    what: str
    command: str
    rows: list[tuple[str, str]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: Every request's record, for ``--dump`` (not rendered).
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every goal met."""
        return all(check.passed for check in self.checks)

    def add(self, metric: str, value: object) -> None:
        """Append one row."""
        self.rows.append((metric, str(value)))

    def check(self, goal: str, passed: bool, detail: str = "") -> bool:
        """Record a goal; returns ``passed``."""
        self.checks.append(Check(goal, passed, detail))
        return passed

    def markdown(self) -> str:
        """The report as a markdown section."""
        lines = [f"### `{self.name}`: {'PASS' if self.passed else 'FAIL'}", "", self.what, "", f"`{self.command}`", ""]
        lines += ["| figure | value |", "|---|---|"]
        lines += [f"| {metric} | {_cell(value)} |" for metric, value in self.rows]
        if self.checks:
            lines += ["", "| goal | met | detail |", "|---|---|---|"]
            lines += [f"| {c.goal} | {'yes' if c.passed else '**no**'} | {_cell(c.detail)} |" for c in self.checks]
        if self.notes:
            lines += [""] + [f"- {note}" for note in self.notes]
        if not self.passed:
            lines += self._failed_requests()
        return "\n".join(lines) + "\n"

    def _failed_requests(self, limit: int = 10) -> list[str]:
        # A failed goal's counts say what failed, not why: the first failures' own messages
        # (the gateway's error body) are what a CI log needs to diagnose a one-off.
        failed = [o for o in self.outcomes if not o.ok]
        if not failed:
            return []
        origin = min(o.started for o in self.outcomes)
        shown = min(limit, len(failed))
        lines = ["", f"Failed requests (first {shown} of {len(failed)}; t from the first request):", ""]
        lines += ["| t, s | model | stream | outcome | ms | message |", "|---|---|---|---|---|---|"]
        for o in failed[:limit]:
            lines.append(
                f"| {o.started - origin:.2f} | {_cell(o.model)} | {o.stream} | {o.label} | "
                f"{(o.ended - o.started) * 1000:.0f} | {_cell(o.error_message[:300])} |"
            )
        return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def format_counts(counter: Counter[str] | dict[str, int]) -> str:
    """``a: 3, b: 1`` (largest first), or ``0``."""
    items = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{k}: {v}" for k, v in items) if items else "0"


def _ms(values: Sequence[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"p50 {statistics.median(ordered) * 1000:.0f} / p95 {p95 * 1000:.0f} / max {ordered[-1] * 1000:.0f}"


def outcome_rows(outcomes: Sequence[Outcome], prefix: str = "") -> list[tuple[str, str]]:
    """Sent, succeeded, failed by kind, flagged by reason, tiers and latency."""
    ok = [o for o in outcomes if o.ok]
    failed = Counter(o.label for o in outcomes if not o.ok)
    flagged = Counter(o.reason or "" for o in ok if o.flagged)
    tiers = Counter(o.tier or "?" for o in ok)
    streams = sum(1 for o in outcomes if o.stream)
    failed_text = f"{sum(failed.values())} ({format_counts(failed)})" if failed else "0"
    flagged_text = f"{sum(flagged.values())} ({format_counts(flagged)})" if flagged else "0"
    return [
        (f"{prefix}requests sent (streams)", f"{len(outcomes)} ({streams})"),
        (f"{prefix}succeeded", str(len(ok))),
        (f"{prefix}failed", failed_text),
        (f"{prefix}flagged (failover, by reason)", flagged_text),
        (f"{prefix}served by tier", format_counts(tiers)),
        (f"{prefix}latency of successes, ms", _ms([o.ended - o.started for o in ok])),
    ]


def ledger_rows(check: LedgerCheck) -> list[tuple[str, str]]:
    """The ledger's growth against the clients' sums."""
    return [
        ("successful responses / ledger requests", f"{check.client_requests} / {check.ledger.requests}"),
        ("lost ledger entries", str(check.lost)),
        ("ledger entries without a client answer", str(check.extra)),
        (
            "ledger cost - sum of client costs",
            f"{check.cost_diff_nanos} nano-USD (clients {check.client_cost_nanos}, ledger {check.ledger.cost_nanos})",
        ),
        (
            "completion tokens clients / ledger",
            f"{check.client_completion_tokens} / {check.ledger.completion_tokens}",
        ),
        ("ledger settled after", f"{check.settle_s:.1f} s"),
    ]


def in_flight_at(outcomes: Iterable[Outcome], moment: float) -> list[Outcome]:
    """Requests that had started and not yet ended at ``moment`` (monotonic)."""
    return [o for o in outcomes if o.started <= moment < o.ended]
