"""A two-tier :class:`~gateway.serving.ChatCompletionService` over given engines, for unit tests."""

from __future__ import annotations

from typing import Any

from gateway.engine import ChatEngine
from gateway.routing.policy import ThresholdPolicy
from gateway.serving import ChatCompletionService, Tier

__all__ = ["FixedScorer", "two_tier_service"]


class FixedScorer:
    """A router that always returns one score."""

    name = "fixed@0"
    default_threshold = None

    def __init__(self, score: float) -> None:
        self._score = score

    async def score(self, messages: Any) -> float:
        return self._score

    def threshold_for_share(self, large_share: float) -> float | None:
        return None  # uncalibrated


def two_tier_service(
    small: ChatEngine,
    large: ChatEngine,
    *,
    score: float | None = None,
    small_options: dict[str, Any] | None = None,
    **large_options: Any,
) -> ChatCompletionService:
    """``small-model`` (with ``small_options``) and ``large-model`` (with ``large_options``, e.g.
    ``supports_tools``); with a ``score``, ``router`` routes by it against a threshold of 0.5,
    else to the small tier."""
    tiers = [
        Tier("small", "small-model", small, 16, 5.0, **(small_options or {})),
        Tier("large", "large-model", large, 16, 5.0, **large_options),
    ]
    policy = None if score is None else ThresholdPolicy(["small", "large"], FixedScorer(score), [0.5], "small")
    return ChatCompletionService(
        tiers, virtual_model_name="router", default_tier="small", max_tokens_limit=100, policy=policy
    )
