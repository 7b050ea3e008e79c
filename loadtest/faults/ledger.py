"""The cost ledger in Redis against what clients were told.

Each fault snapshots the ledger's all-time totals (``{<prefix>}:total``, the hash behind
``/metrics`` and ``/admin/costs``) before its load and compares the difference afterwards
with the sum of the per-request costs its clients received. Integers all the way: requests,
tokens and nano-dollars, so "equal" means equal.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import redis

from gateway.accounting.layout import LedgerLayout, decode_field
from loadtest.faults.load import Outcome

__all__ = ["LedgerCheck", "LedgerSnapshot", "compare", "read_ledger", "settle"]


@dataclass(frozen=True)
class LedgerSnapshot:
    """All-time ledger totals (summed over tiers, models and keys), plus requests by tier."""

    requests: int = 0
    cost_nanos: int = 0
    completion_tokens: int = 0
    by_tier: dict[str, int] = field(default_factory=dict)

    def __sub__(self, other: LedgerSnapshot) -> LedgerSnapshot:
        tiers = set(self.by_tier) | set(other.by_tier)
        return LedgerSnapshot(
            self.requests - other.requests,
            self.cost_nanos - other.cost_nanos,
            self.completion_tokens - other.completion_tokens,
            {t: self.by_tier.get(t, 0) - other.by_tier.get(t, 0) for t in sorted(tiers)},
        )


def read_ledger(redis_url: str, key_prefix: str) -> LedgerSnapshot:
    """Read the totals hash (raises ``redis.RedisError`` while Redis is down)."""
    client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        raw: dict[bytes, bytes] = client.hgetall(LedgerLayout(key_prefix).total_key())  # type: ignore[assignment]
    finally:
        client.close()
    requests = cost = completion = 0
    by_tier: dict[str, int] = {}
    for name, value in raw.items():
        decoded = decode_field(name.decode())
        if decoded is None:
            continue
        series, metric = decoded
        amount = int(value)
        if metric == "requests":
            requests += amount
            by_tier[series.tier] = by_tier.get(series.tier, 0) + amount
        elif metric == "cost_nanos":
            cost += amount
        elif metric == "completion_tokens":
            completion += amount
    return LedgerSnapshot(requests, cost, completion, by_tier)


@dataclass(frozen=True)
class LedgerCheck:
    """Ledger growth during a fault vs what clients were told."""

    client_requests: int
    client_cost_nanos: int
    client_completion_tokens: int
    ledger: LedgerSnapshot
    settle_s: float

    @property
    def lost(self) -> int:
        """Answers with a cost that the ledger does not count (the goal is 0)."""
        return max(0, self.client_requests - self.ledger.requests)

    @property
    def extra(self) -> int:
        """Ledger entries without an answer a client saw (e.g. settled, then the connection died)."""
        return max(0, self.ledger.requests - self.client_requests)

    @property
    def cost_diff_nanos(self) -> int:
        """Ledger cost minus the sum of reported costs, in nano-dollars."""
        return self.ledger.cost_nanos - self.client_cost_nanos

    @property
    def exact(self) -> bool:
        """Same request count, same cost to the nano-dollar, same completion tokens."""
        return (
            self.ledger.requests == self.client_requests
            and self.cost_diff_nanos == 0
            and self.ledger.completion_tokens == self.client_completion_tokens
        )


def compare(outcomes: Iterable[Outcome], ledger: LedgerSnapshot, settle_s: float = 0.0) -> LedgerCheck:
    """Sum what successful clients were told and pair it with the ledger's growth."""
    ok = [o for o in outcomes if o.ok]
    return LedgerCheck(
        client_requests=len(ok),
        client_cost_nanos=sum(o.cost_nanos or 0 for o in ok),
        client_completion_tokens=sum(o.completion_tokens or 0 for o in ok),
        ledger=ledger,
        settle_s=settle_s,
    )


def settle(
    redis_url: str, key_prefix: str, before: LedgerSnapshot, at_least: int, timeout_s: float = 30.0
) -> tuple[LedgerSnapshot, float]:
    """Wait until the ledger has grown by ``at_least`` requests and stopped moving.

    Buffered increments (Redis was down) reach Redis on the writer's next retry, so the
    count may lag; returns the growth and the seconds waited (the full timeout if it never
    got there, which the caller reports as lost entries).
    """
    start = time.monotonic()
    last: LedgerSnapshot | None = None
    stable_since = start
    while True:
        now = time.monotonic()
        try:
            delta = read_ledger(redis_url, key_prefix) - before
        except redis.RedisError:
            delta = None
        if delta is not None:
            if last is None or delta.requests != last.requests or delta.cost_nanos != last.cost_nanos:
                last, stable_since = delta, now
            elif delta.requests >= at_least and now - stable_since >= 1.0:
                return delta, now - start
        if now - start >= timeout_s:
            return (last or LedgerSnapshot()), now - start
        time.sleep(0.25)
