"""The routing policy: a learned score against ascending thresholds picks the tier.

A score is the router's probability that a stronger model is needed. Tiers are ordered
from cheapest to most expensive; ``thresholds[k]`` is the boundary between tier ``k``
and tier ``k + 1``, so a score at or above it goes at least to tier ``k + 1``. With the
default two tiers that is one threshold: ``score >= threshold`` goes to the large model.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.errors import ConfigError, InvalidRequestError

__all__ = ["ConversationScorer", "RoutingDecision", "ThresholdPolicy", "check_threshold"]


class ConversationScorer(Protocol):
    """Scores a whole conversation; CPU work happens off the event loop."""

    @property
    def name(self) -> str:
        """Router name and artifact identity (``<router>@<digest>``), for headers and logs."""
        ...

    @property
    def default_threshold(self) -> float | None:
        """The artifact's calibrated two-tier threshold, if any."""
        ...

    async def score(self, messages: Sequence[Mapping[str, Any]]) -> float:
        """Probability in [0, 1] that the large model is needed, for OpenAI chat ``messages``
        (the whole conversation, as the engines take it)."""
        ...

    def threshold_for_share(self, large_share: float) -> float | None:
        """The threshold in [0, 1] that sends ``large_share`` of the artifact's reference prompts
        to the large model (its calibration), or ``None`` when it has no calibration."""
        ...


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """Which tier serves a request, and why (``score``, ``override``, ``model``, ``default``,
    ``escalated:<why>``, ``fallback:<why>``)."""

    tier: str
    reason: str
    score: float | None = None
    threshold: float | None = None
    decision_ms: float = 0.0


def check_threshold(value: float, param: str = "threshold") -> float:
    """A threshold must lie in [0, 1]; anything else is the client's 400."""
    if not 0.0 <= value <= 1.0:
        raise InvalidRequestError(f"threshold must be within [0, 1], got {value:g}", param=param, code="invalid_value")
    return value


class ThresholdPolicy:
    """Routes by the score against ascending per-boundary thresholds."""

    def __init__(
        self,
        tiers: Sequence[str],
        scorer: ConversationScorer | None,
        thresholds: Sequence[float] | None,
        fallback_tier: str,
    ) -> None:
        if not tiers:
            raise ValueError("at least one tier is required")
        self._tiers = list(tiers)
        self._scorer = scorer
        self._fallback_tier = fallback_tier
        chosen = list(thresholds) if thresholds else []
        if not chosen and scorer is not None and scorer.default_threshold is not None and len(tiers) == 2:
            chosen = [scorer.default_threshold]
        if scorer is not None and len(tiers) > 1 and len(chosen) != len(tiers) - 1:
            raise ConfigError(
                f"{len(tiers)} tiers need {len(tiers) - 1} ascending routing thresholds, got {len(chosen)}"
            )
        if any(b < a for a, b in itertools.pairwise(chosen)):
            raise ConfigError(f"routing thresholds must ascend, got {chosen}")
        self._thresholds = [check_threshold(t) for t in chosen]

    @property
    def thresholds(self) -> list[float]:
        """The boundaries in force, cheapest boundary first."""
        return list(self._thresholds)

    @property
    def threshold(self) -> float | None:
        """The boundary into the most expensive tier (the two-tier threshold)."""
        return self._thresholds[-1] if self._thresholds else None

    @property
    def router_name(self) -> str | None:
        """``<router>@<digest>`` of the learned router in use."""
        return self._scorer.name if self._scorer is not None else None

    def threshold_for_share(self, large_share: float) -> float | None:
        """The router's threshold for ``large_share`` (see :meth:`ConversationScorer.threshold_for_share`);
        ``None`` without a router or its calibration."""
        return self._scorer.threshold_for_share(large_share) if self._scorer is not None else None

    async def decide(
        self,
        messages: Sequence[Mapping[str, Any]],
        threshold_override: float | None = None,
        thresholds: Sequence[float] | None = None,
    ) -> RoutingDecision:
        """Score ``messages`` and pick a tier.

        ``thresholds`` replaces the configured boundaries for this decision (live
        operator settings); ``threshold_override`` is the client's per-request value.
        """
        if threshold_override is not None:
            check_threshold(threshold_override)
        base = list(thresholds) if thresholds else self._thresholds
        if self._scorer is None or not base:
            return RoutingDecision(self._fallback_tier, "default")
        boundaries = (
            base
            if threshold_override is None
            else [min(t, threshold_override) for t in base[:-1]] + [threshold_override]
        )
        started = time.perf_counter()
        score = await self._scorer.score(messages)
        elapsed_ms = (time.perf_counter() - started) * 1000
        index = bisect.bisect_right(boundaries, score)
        reason = "override" if threshold_override is not None else "score"
        return RoutingDecision(self._tiers[index], reason, score, boundaries[-1], elapsed_ms)
