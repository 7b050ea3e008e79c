"""Instruments read back through the SDK's InMemoryMetricReader."""

from __future__ import annotations

import pytest

from gateway.accounting import RequestCost
from gateway.telemetry import RequestRecord, TelemetryConfig, UpstreamRecord
from gateway.telemetry import semconv as sc
from tests.unit.telemetry.conftest import Harness, make_harness

SMALL = RequestRecord(
    tier="small",
    response_model="smollm2-135m-instruct",
    request_model="router",
    provider="vllm",
    routing_reason="classifier",
    key_id="key_abc",
    duration_s=0.25,
    time_to_first_token_s=0.03,
    stream=True,
    cost=RequestCost(1000, 500, 500_000, 7_500_000),
)
LARGE = RequestRecord(
    tier="large",
    response_model="gpt-4o",
    request_model="gpt-4o",
    provider="openai",
    routing_reason="explicit",
    key_id="key_abc",
    duration_s=1.5,
    cost=RequestCost(1000, 500, 7_500_000, 7_500_000),
)


def test_request_counters_money_and_latency(harness: Harness) -> None:
    harness.telemetry.record_request(SMALL)
    harness.telemetry.record_request(LARGE)
    harness.telemetry.record_request(SMALL)
    requests = {p.attributes[sc.ATTR_TIER]: p for p in harness.points(sc.METRIC_REQUESTS)}
    assert requests["small"].value == 2 and requests["large"].value == 1
    attrs = dict(requests["small"].attributes)
    assert attrs == {
        sc.ATTR_OPERATION: "chat",
        sc.ATTR_PROVIDER: "vllm",
        sc.ATTR_REQUEST_MODEL: "router",
        sc.ATTR_RESPONSE_MODEL: "smollm2-135m-instruct",
        sc.ATTR_TIER: "small",
        sc.ATTR_ROUTING_REASON: "classifier",
        sc.ATTR_STREAM: True,
        sc.ATTR_KEY_ID: "key_abc",
    }
    assert sum(p.value for p in harness.points(sc.METRIC_PROMPT_TOKENS)) == 3000
    assert sum(p.value for p in harness.points(sc.METRIC_COMPLETION_TOKENS)) == 1500
    assert sum(p.value for p in harness.points(sc.METRIC_COST)) == pytest.approx(0.0085)
    assert sum(p.value for p in harness.points(sc.METRIC_BASELINE_COST)) == pytest.approx(0.0225)
    assert sum(p.value for p in harness.points(sc.METRIC_SAVINGS)) == pytest.approx(0.014)
    durations = {p.attributes[sc.ATTR_TIER]: p for p in harness.points(sc.METRIC_SERVER_DURATION)}
    assert durations["small"].count == 2 and durations["small"].sum == pytest.approx(0.5)
    assert tuple(durations["large"].explicit_bounds) == sc.BUCKETS_DURATION_S
    (ttft,) = harness.points(sc.METRIC_TTFT)  # only streams have a time to first token
    assert ttft.count == 2 and tuple(ttft.explicit_bounds) == sc.BUCKETS_TTFT_S
    (share,) = harness.points(sc.METRIC_LARGE_SHARE)
    assert share.value == pytest.approx(1 / 3)


def test_upstream_calls_follow_genai_conventions(harness: Harness) -> None:
    harness.telemetry.record_upstream(UpstreamRecord("large", "openai", "gpt-4o", "gpt-4o-2024-08-06", 0.8, 120, 30))
    harness.telemetry.record_upstream(
        UpstreamRecord("large", "openai", "gpt-4o", "gpt-4o", 0.1, error_type="UpstreamTimeoutError")
    )
    usage = {p.attributes[sc.ATTR_TOKEN_TYPE]: p for p in harness.points(sc.METRIC_TOKEN_USAGE)}
    assert set(usage) == {"input", "output"}  # the failed call reported no usage
    assert usage["input"].sum == 120 and usage["output"].sum == 30
    assert usage["input"].attributes[sc.ATTR_RESPONSE_MODEL] == "gpt-4o-2024-08-06"
    assert tuple(usage["input"].explicit_bounds) == sc.BUCKETS_TOKENS
    durations = harness.points(sc.METRIC_CLIENT_DURATION)
    assert sorted(p.attributes.get(sc.ATTR_ERROR_TYPE, "") for p in durations) == ["", "UpstreamTimeoutError"]
    assert harness.metrics()[sc.METRIC_CLIENT_DURATION].unit == "s"


def test_routing_escalations_and_fallbacks(harness: Harness) -> None:
    harness.telemetry.record_routing(0.0004, tier="small", reason="classifier")
    harness.telemetry.record_escalation(from_tier="small", to_tier="large", reason="low_confidence")
    harness.telemetry.record_escalation(from_tier="small", to_tier="large", reason="low_confidence")
    harness.telemetry.record_fallback(from_tier="small", to_tier="large", reason="EngineOverloadedError")
    (decision,) = harness.points(sc.METRIC_DECISION_DURATION)
    assert decision.count == 1 and decision.sum == pytest.approx(0.0004)
    assert tuple(decision.explicit_bounds) == sc.BUCKETS_DECISION_S
    (escalations,) = harness.points(sc.METRIC_ESCALATIONS)
    assert escalations.value == 2
    assert dict(escalations.attributes) == {
        sc.ATTR_FROM_TIER: "small",
        sc.ATTR_TO_TIER: "large",
        sc.ATTR_ROUTING_REASON: "low_confidence",
    }
    (fallback,) = harness.points(sc.METRIC_FALLBACKS)
    assert fallback.value == 1


def test_large_share_is_a_window_and_ignores_failures() -> None:
    h = make_harness(TelemetryConfig(large_share_window=4, large_tiers=["large"], key_id_in_metrics=False))
    assert sc.METRIC_LARGE_SHARE not in h.metrics()  # nothing observed before any request
    for record in (LARGE, LARGE, SMALL, SMALL, SMALL, SMALL):
        h.telemetry.record_request(record)
    h.telemetry.record_request(
        RequestRecord("large", "gpt-4o", "gpt-4o", "openai", duration_s=0.1, error_type="UpstreamError")
    )
    (share,) = h.points(sc.METRIC_LARGE_SHARE)
    assert share.value == 0.0  # the two large answers fell out of the last-4 window
    assert all(sc.ATTR_KEY_ID not in p.attributes for p in h.points(sc.METRIC_REQUESTS))
    errors = [p for p in h.points(sc.METRIC_REQUESTS) if sc.ATTR_ERROR_TYPE in p.attributes]
    assert len(errors) == 1 and errors[0].value == 1
    h.telemetry.shutdown()
    h.telemetry.shutdown()  # idempotent


def test_resource_identifies_the_replica(harness: Harness) -> None:
    assert harness.telemetry.instance_id == "replica-1"
    assert harness.telemetry.resource.attributes["service.name"] == "slm-router"


def test_provider_names_follow_the_conventions() -> None:
    from gateway.config import LiteLLMTierConfig, VLLMTierConfig
    from gateway.telemetry import provider_name

    assert provider_name(VLLMTierConfig(served_model_name="s")) == "vllm"
    standin = LiteLLMTierConfig(served_model_name="l", model="openai/local-large-standin", api_base="standin")
    assert provider_name(standin) == "slm_router.standin"
    assert provider_name(LiteLLMTierConfig(served_model_name="l", model="openai/gpt-4o")) == "openai"
    assert provider_name(LiteLLMTierConfig(served_model_name="l", model="bedrock/claude")) == "aws.bedrock"
    bare = LiteLLMTierConfig(served_model_name="l", model="claude-3-5-sonnet")
    assert provider_name(bare) == "litellm"
    assert provider_name(bare, {"claude-3-5-sonnet": {"litellm_provider": "anthropic"}}) == "anthropic"
