"""Escalation and fallback between tiers, for requests routed by the virtual model."""

from __future__ import annotations

import pytest

from gateway.errors import (
    EngineOverloadedError,
    InvalidRequestError,
    ModelNotFoundError,
    ModelRefusedParameterError,
    ServiceUnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
)
from gateway.protocol import ChatCompletionRequest
from gateway.routing import ThresholdPolicy
from gateway.serving import ChatCompletionService, ChatResult, StreamResult, Tier, failover_reason
from tests.fakes.engines import ScriptedEngine
from tests.unit.test_routing_policy import LengthScorer


def build(small: ScriptedEngine, large: ScriptedEngine, medium: ScriptedEngine | None = None) -> ChatCompletionService:
    tiers = [Tier("small", "s", small, 8, 0.5)]
    names = ["small"]
    if medium is not None:
        tiers.append(Tier("medium", "m", medium, 8, 0.5))
        names.append("medium")
    tiers.append(Tier("large", "l", large, 8, 0.5))
    names.append("large")
    thresholds = [0.3, 0.6][: len(names) - 1] if medium is not None else [0.6]
    policy = ThresholdPolicy(names, LengthScorer(), thresholds, "small")
    return ChatCompletionService(
        tiers, virtual_model_name="router", default_tier="small", max_tokens_limit=64, policy=policy
    )


def req(content: str = "short", **extra: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "router", "messages": [{"role": "user", "content": content}], **extra}
    )


@pytest.mark.parametrize(
    ("error", "why"),
    [
        (UpstreamError("x"), "error"),
        (UpstreamTimeoutError("x"), "timeout"),
        (EngineOverloadedError("x"), "overloaded"),
        (ServiceUnavailableError("x"), "unavailable"),
        (InvalidRequestError("x", code="context_length_exceeded"), "context_length"),
    ],
)
async def test_small_failure_escalates_to_large(error: Exception, why: str) -> None:
    small = ScriptedEngine(model="s", fail_before=error)  # type: ignore[arg-type]
    result = await build(small, ScriptedEngine(model="l")).create(req())
    assert isinstance(result, ChatResult)
    assert result.response.model == "l"
    assert result.headers["x-slm-router-tier"] == "large"
    assert result.headers["x-slm-router-reason"] == f"escalated:{why}"


async def test_small_timeout_escalates() -> None:
    result = await build(ScriptedEngine(model="s", delay_s=2), ScriptedEngine(model="l")).create(req())
    assert isinstance(result, ChatResult) and result.headers["x-slm-router-reason"] == "escalated:timeout"


async def test_large_failure_falls_back_to_small_flagged() -> None:
    large = ScriptedEngine(model="l", fail_before=UpstreamError("down"))
    result = await build(ScriptedEngine(model="s"), large).create(req("x" * 90))
    assert isinstance(result, ChatResult)
    assert result.headers["x-slm-router-tier"] == "small"
    assert result.headers["x-slm-router-reason"] == "fallback:error"


async def test_streaming_fails_over_before_the_first_byte() -> None:
    small = ScriptedEngine(model="s", fail_before=EngineOverloadedError("full"))
    result = await build(small, ScriptedEngine(model="l")).create(req(stream=True))
    assert isinstance(result, StreamResult)
    assert result.headers["x-slm-router-reason"] == "escalated:overloaded"
    frames = [f async for f in result.frames]
    assert b'"model":"l"' in frames[1]


async def test_context_overflow_does_not_fall_back_downwards() -> None:
    large = ScriptedEngine(model="l", fail_before=InvalidRequestError("long", code="context_length_exceeded"))
    with pytest.raises(InvalidRequestError):
        await build(ScriptedEngine(model="s"), large).create(req("x" * 90))


async def test_everything_down_raises_the_last_error() -> None:
    small = ScriptedEngine(model="s", fail_before=UpstreamError("a"))
    large = ScriptedEngine(model="l", fail_before=UpstreamTimeoutError("b"))
    with pytest.raises(UpstreamTimeoutError):
        await build(small, large).create(req())
    assert len(small.requests) == 1 and len(large.requests) == 1


async def test_client_errors_and_named_models_do_not_fail_over() -> None:
    small = ScriptedEngine(model="s", fail_before=InvalidRequestError("bad"))
    with pytest.raises(InvalidRequestError):
        await build(small, ScriptedEngine(model="l")).create(req())
    small = ScriptedEngine(model="s", fail_before=UpstreamError("down"))
    with pytest.raises(UpstreamError):
        await build(small, ScriptedEngine(model="l")).create(req(model="s"))
    assert failover_reason(InvalidRequestError("bad")) is None


async def test_a_refused_sampling_field_moves_a_routed_request_and_is_a_400_for_a_named_model() -> None:
    def refusing() -> ScriptedEngine:
        error = ModelRefusedParameterError("l refused the temperature: only 1", param="temperature")
        return ScriptedEngine(model="l", fail_before=error)

    result = await build(ScriptedEngine(model="s"), refusing()).create(req("x" * 90, temperature=0.2))
    assert isinstance(result, ChatResult)
    assert result.headers["x-slm-router-tier"] == "small"
    assert result.headers["x-slm-router-reason"] == "fallback:refused"
    with pytest.raises(ModelRefusedParameterError) as info:
        await build(ScriptedEngine(model="s"), refusing()).create(req(model="l", temperature=0.2))
    assert info.value.status_code == 400 and info.value.param == "temperature"


async def test_three_tiers_escalate_one_step_at_a_time() -> None:
    small = ScriptedEngine(model="s", fail_before=UpstreamError("a"))
    medium = ScriptedEngine(model="m", fail_before=UpstreamError("b"))
    result = await build(small, ScriptedEngine(model="l"), medium).create(req())
    assert isinstance(result, ChatResult) and result.response.model == "l"
    assert len(medium.requests) == 1


async def test_three_tier_boundaries() -> None:
    svc = build(ScriptedEngine(model="s"), ScriptedEngine(model="l"), ScriptedEngine(model="m"))
    tiers = []
    for length in (10, 40, 80):
        result = await svc.create(req("x" * length))
        assert isinstance(result, ChatResult)
        tiers.append(result.headers["x-slm-router-tier"])
    assert tiers == ["small", "medium", "large"]


async def test_threshold_overrides() -> None:
    svc = build(ScriptedEngine(model="s"), ScriptedEngine(model="l"))
    by_name = await svc.create(req("x" * 10, model="router-length-0.05"))
    assert isinstance(by_name, ChatResult)
    assert by_name.headers["x-slm-router-reason"] == "override" and by_name.headers["x-slm-router-tier"] == "large"
    by_field = await svc.create(req("x" * 80, router_threshold=0.95))
    assert isinstance(by_field, ChatResult) and by_field.headers["x-slm-router-tier"] == "small"
    by_header = await svc.create(req("x" * 10), threshold_override=0.01)
    assert isinstance(by_header, ChatResult) and by_header.headers["x-slm-router-threshold"] == "0.010000"
    with pytest.raises(InvalidRequestError) as bad:
        await svc.create(req(model="router-length-1.5"))
    assert bad.value.param == "model"
    with pytest.raises(InvalidRequestError):
        await svc.create(req(model="router-length-abc"))
    with pytest.raises(ModelNotFoundError):
        await svc.create(req(model="router-mf-0.1"))
