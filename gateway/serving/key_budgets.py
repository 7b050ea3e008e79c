"""Per-key dollar budgets, checked against the cost ledger.

A key's spend is the sum of its all-time cost in the ledger (every replica writes
there). Reading it per request would add a Redis round trip to the hot path, so each
replica refreshes the ledger's totals at most once a second and answers from memory:
a key may overshoot its budget by about a second of traffic.
"""

from __future__ import annotations

import asyncio
import logging
import time

from gateway.accounting import Ledger

__all__ = ["KeySpend"]

logger = logging.getLogger(__name__)


class KeySpend:
    """All-time spend per API key, cached for ``ttl_s`` seconds."""

    def __init__(self, ledger: Ledger, ttl_s: float = 1.0) -> None:
        self._ledger = ledger
        self._ttl_s = ttl_s
        self._spend: dict[str, int] = {}
        self._fetched = -float("inf")
        self._lock = asyncio.Lock()

    async def _refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._fetched < self._ttl_s:
                return
            try:
                totals = await self._ledger.totals()
            except Exception as exc:  # noqa: BLE001 - Redis down: keep the last known spend
                logger.debug("key spend refresh failed: %s", type(exc).__name__)
                self._fetched = time.monotonic()
                return
            spend: dict[str, int] = {}
            for series in totals:
                key_id = series.series.key_id
                if key_id:
                    spend[key_id] = spend.get(key_id, 0) + series.counts.cost_nanos
            self._spend = spend
            self._fetched = time.monotonic()

    async def spent_usd(self, key_id: str) -> float:
        """What ``key_id`` has spent so far, in USD."""
        if time.monotonic() - self._fetched >= self._ttl_s:
            await self._refresh()
        return self._spend.get(key_id, 0) / 1e9
