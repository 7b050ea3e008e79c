"""Per-request settlement: price the usage, write it to the ledger, never fail the request.

This is the one call the serving layer makes when a request's usage is final (after
the response for non-stream requests, in the stream generator's ``finally`` for
streams). Accounting must never turn a good answer into an error, so ledger failures
are logged and counted here instead of raised.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from gateway.accounting.cost import Attempt, CostCalculator, RequestCost
from gateway.accounting.ledger import Ledger

__all__ = ["CostRecorder"]

logger = logging.getLogger(__name__)


class CostRecorder:
    """Prices a request with a :class:`CostCalculator` and records it in a :class:`Ledger`."""

    def __init__(self, calculator: CostCalculator, ledger: Ledger | None) -> None:
        """``ledger=None`` prices requests without recording them (e.g. no Redis configured)."""
        self._calculator = calculator
        self._ledger = ledger
        #: Requests whose ledger write failed since start-up (for health checks and logs).
        self.failed_writes = 0

    @property
    def calculator(self) -> CostCalculator:
        """The calculator in use."""
        return self._calculator

    async def settle(
        self,
        *,
        tier: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int = 0,
        key_id: str | None = None,
        wasted: Sequence[Attempt] = (),
    ) -> RequestCost:
        """Price one finished request and record it; returns the cost to report to the client."""
        cost = self._calculator.cost(tier, prompt_tokens, completion_tokens, cached_tokens=cached_tokens, wasted=wasted)
        if self._ledger is not None:
            try:
                await self._ledger.record(cost, tier=tier, model=model, key_id=key_id)
            except Exception as exc:  # noqa: BLE001 - a ledger outage must not fail the request
                self.failed_writes += 1
                logger.warning(
                    "cost ledger write failed (%s: %s); request on tier %s not recorded",
                    type(exc).__name__,
                    exc,
                    tier,
                )
        return cost
