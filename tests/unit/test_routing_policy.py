"""The threshold policy over a scripted scorer, and the service's use of it."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from pydantic import ValidationError

from gateway.errors import InvalidRequestError
from gateway.protocol import ChatCompletionRequest
from gateway.routing import RoutingPreference, ThresholdPolicy, load_scorer
from gateway.routing.scorer import DEFAULT_ARTIFACT
from gateway.serving import ChatCompletionService, ChatResult, Tier
from tests.fakes.engines import ScriptedEngine


class LengthScorer:
    """Scores by conversation length: long conversations need the large model."""

    name = "length@test"
    default_threshold = 0.5

    def __init__(self) -> None:
        self.seen: list[list[dict[str, str]]] = []

    async def score(self, messages: Sequence[dict[str, str]]) -> float:
        self.seen.append(list(messages))
        return min(1.0, sum(len(m["content"]) for m in messages) / 100)

    def threshold_for_share(self, large_share: float) -> float | None:
        # As if calibrated on reference conversations of every length from 0 to 100 characters.
        return 1.0 - large_share


async def test_policy_routes_by_threshold() -> None:
    policy = ThresholdPolicy(["small", "large"], LengthScorer(), None, "small")
    assert policy.threshold == 0.5
    short = await policy.decide([{"role": "user", "content": "x" * 10}])
    long = await policy.decide([{"role": "user", "content": "x" * 80}])
    assert (short.tier, short.reason, short.score) == ("small", "score", 0.1)
    assert (long.tier, long.threshold) == ("large", 0.5)
    assert long.decision_ms >= 0
    edge = await policy.decide([{"role": "user", "content": "x" * 50}])
    assert edge.tier == "large"  # score == threshold escalates


async def test_explicit_threshold_and_override() -> None:
    policy = ThresholdPolicy(["small", "large"], LengthScorer(), [0.05], "small")
    assert (await policy.decide([{"role": "user", "content": "x" * 10}])).tier == "large"
    overridden = await policy.decide([{"role": "user", "content": "x" * 10}], threshold_override=0.9)
    assert (overridden.tier, overridden.reason) == ("small", "override")
    with pytest.raises(InvalidRequestError):
        await policy.decide([{"role": "user", "content": "x"}], threshold_override=1.5)
    with pytest.raises(InvalidRequestError):
        ThresholdPolicy(["small", "large"], LengthScorer(), [-0.1], "small")


async def test_no_scorer_uses_fallback() -> None:
    decision = await ThresholdPolicy(["small", "large"], None, None, "small").decide([{"role": "user", "content": "x"}])
    assert (decision.tier, decision.reason, decision.score) == ("small", "default", None)


async def test_service_scores_the_whole_conversation_and_sets_headers() -> None:
    scorer = LengthScorer()
    tiers = [Tier("small", "s", ScriptedEngine(model="s"), 8, 5), Tier("large", "l", ScriptedEngine(model="l"), 8, 5)]
    service = ChatCompletionService(
        tiers,
        virtual_model_name="router",
        default_tier="small",
        max_tokens_limit=50,
        policy=ThresholdPolicy(["small", "large"], scorer, [0.5], "small"),
    )
    body = {
        "model": "router",
        "messages": [
            {"role": "system", "content": "x" * 40},
            {"role": "assistant", "content": "y" * 40},
            {"role": "user", "content": "short"},
        ],
    }
    result = await service.create(ChatCompletionRequest.model_validate(body))
    assert isinstance(result, ChatResult)
    assert len(scorer.seen[-1]) == 3  # every turn, not only the last message
    assert result.headers["x-slm-router-tier"] == "large"
    assert result.headers["x-slm-router-reason"] == "score"
    assert result.headers["x-slm-router-score"] == "0.850000"
    assert result.headers["x-slm-router-threshold"] == "0.500000"
    assert result.headers["x-slm-router-router"] == "length@test"
    named = await service.create(ChatCompletionRequest.model_validate({**body, "model": "s"}))
    assert isinstance(named, ChatResult)
    assert named.headers["x-slm-router-reason"] == "model" and "x-slm-router-score" not in named.headers


def test_the_shipped_artifact_turns_a_share_into_its_own_threshold() -> None:
    scorer = load_scorer(DEFAULT_ARTIFACT, workers=1)
    try:
        # Its default threshold is the one calibrated for a share of 0.3.
        assert scorer.default_threshold is not None
        assert scorer.threshold_for_share(0.3) == pytest.approx(scorer.default_threshold)
        low, high = scorer.threshold_for_share(0.1), scorer.threshold_for_share(0.5)
        assert low is not None and high is not None and low > high
        assert scorer.threshold_for_share(0.0) == 1.0  # capped: a threshold lies in [0, 1]
        assert scorer.threshold_for_share(1.0) == 0.0
        policy = ThresholdPolicy(["small", "large"], scorer, None, "small")
        assert policy.threshold_for_share(0.5) == high
    finally:
        scorer.close()
    assert ThresholdPolicy(["small", "large"], None, None, "small").threshold_for_share(0.5) is None


def test_a_routing_preference_is_a_threshold_or_a_share() -> None:
    policy = ThresholdPolicy(["small", "large"], LengthScorer(), None, "small")
    assert RoutingPreference(threshold=0.4).threshold_with(policy) == 0.4
    assert RoutingPreference(large_share=0.25).threshold_with(policy) == 0.75
    assert RoutingPreference(large_share=0.25).threshold_with(None) is None
    assert RoutingPreference().threshold_with(policy) is None
    with pytest.raises(ValidationError, match="not both"):
        RoutingPreference(threshold=0.4, large_share=0.2)
    # What keys stored before preferences were checked reads as none.
    assert RoutingPreference.stored({"tier": "small"}) == RoutingPreference()
    assert RoutingPreference.stored({"threshold": 7}) == RoutingPreference()
    assert RoutingPreference.stored({"large_share": 0.5}).large_share == 0.5
