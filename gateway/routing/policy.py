"""The routing policy: a learned score against a threshold picks the tier.

A score is the router's probability that the large model is needed. With tiers ordered
from cheapest to most expensive, a score at or above the threshold goes to the most
expensive tier, below it to the cheapest.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.errors import InvalidRequestError

__all__ = ["ConversationScorer", "RoutingDecision", "ThresholdPolicy"]


class ConversationScorer(Protocol):
    """Scores a whole conversation; CPU work happens off the event loop."""

    @property
    def name(self) -> str:
        """Router name and artifact identity, for headers and logs."""
        ...

    @property
    def default_threshold(self) -> float | None:
        """The artifact's calibrated threshold, if any."""
        ...

    async def score(self, messages: Sequence[dict[str, str]]) -> float:
        """Probability in [0, 1] that the large model is needed."""
        ...


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """Which tier serves a request, and why."""

    tier: str
    reason: str
    score: float | None = None
    threshold: float | None = None
    decision_ms: float = 0.0


def _check_threshold(value: float, param: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise InvalidRequestError(f"threshold must be within [0, 1], got {value:g}", param=param, code="invalid_value")
    return value


class ThresholdPolicy:
    """Routes by ``score >= threshold`` between the cheapest and the most expensive tier."""

    def __init__(
        self, tiers: Sequence[str], scorer: ConversationScorer | None, threshold: float | None, fallback_tier: str
    ) -> None:
        if not tiers:
            raise ValueError("at least one tier is required")
        self._tiers = list(tiers)
        self._scorer = scorer
        chosen = threshold if threshold is not None else (scorer.default_threshold if scorer else None)
        self._threshold = None if chosen is None else _check_threshold(chosen, "threshold")
        self._fallback_tier = fallback_tier

    @property
    def threshold(self) -> float | None:
        """The threshold in force."""
        return self._threshold

    @property
    def router_name(self) -> str | None:
        """Name of the learned router in use."""
        return self._scorer.name if self._scorer is not None else None

    async def decide(
        self, messages: Sequence[dict[str, str]], threshold_override: float | None = None
    ) -> RoutingDecision:
        """Score ``messages`` and pick a tier."""
        threshold = self._threshold if threshold_override is None else _check_threshold(threshold_override, "threshold")
        if self._scorer is None or threshold is None or len(self._tiers) == 1:
            return RoutingDecision(self._fallback_tier, "default")
        started = time.perf_counter()
        score = await self._scorer.score(messages)
        elapsed_ms = (time.perf_counter() - started) * 1000
        tier = self._tiers[-1] if score >= threshold else self._tiers[0]
        return RoutingDecision(
            tier, "override" if threshold_override is not None else "score", score, threshold, elapsed_ms
        )
