"""``reasoning_effort`` and ``verbosity``: sent to the tiers whose model takes them, refused where
no model the request may reach takes them, and reported when a routed request's tier drops them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.errors import InvalidRequestError, ModelRefusedParameterError, UnsupportedParameterError
from gateway.protocol import ChatCompletionRequest
from gateway.protocol.parsing import parse_body
from gateway.protocol.responses import ResponsesRequest
from gateway.serving import HEADER_DROPPED_PARAMS, HEADER_REASON, HEADER_TIER, ChatCompletionService, ChatResult
from gateway.serving.responses_input import chat_form
from tests.fakes.engines import ScriptedEngine
from tests.fakes.services import two_tier_service

USER = {"role": "user", "content": "Prove that there are infinitely many primes."}


def parse(model: str = "router", **fields: Any) -> ChatCompletionRequest:
    return parse_body(json.dumps({"model": model, "messages": [USER], **fields}).encode(), ChatCompletionRequest)


def service(
    small: ScriptedEngine,
    large: ScriptedEngine,
    *,
    score: float = 0.9,
    large_params: frozenset[str] = frozenset({"reasoning_effort", "verbosity"}),
) -> ChatCompletionService:
    return two_tier_service(small, large, score=score, model_params=large_params)


async def test_a_tier_that_takes_them_is_sent_them() -> None:
    small, large = ScriptedEngine(model="small-model"), ScriptedEngine(model="large-model")
    result = await service(small, large).create(parse(reasoning_effort="high", verbosity="low"))
    assert isinstance(result, ChatResult)
    assert result.headers[HEADER_TIER] == "large"
    sent = large.requests[-1]
    assert (sent.reasoning_effort, sent.verbosity) == ("high", "low")
    assert sent.openai_optional_fields()["reasoning_effort"] == "high"
    assert HEADER_DROPPED_PARAMS not in result.headers


async def test_a_routed_request_on_a_tier_without_them_is_answered_without_them_and_says_so() -> None:
    small, large = ScriptedEngine(model="small-model"), ScriptedEngine(model="large-model")
    result = await service(small, large, score=0.1).create(parse(reasoning_effort="low", verbosity="high"))
    assert isinstance(result, ChatResult)
    assert result.headers[HEADER_TIER] == "small"  # the router's choice stands
    sent = small.requests[-1]
    assert sent.reasoning_effort is None and sent.verbosity is None
    assert "reasoning_effort" not in sent.openai_optional_fields()
    assert result.headers[HEADER_DROPPED_PARAMS] == "reasoning_effort,verbosity"


async def test_the_default_verbosity_asks_for_nothing() -> None:
    small, large = ScriptedEngine(model="small-model"), ScriptedEngine(model="large-model")
    result = await service(small, large, large_params=frozenset()).create(parse("small-model", verbosity="medium"))
    assert isinstance(result, ChatResult)
    assert small.requests[-1].verbosity is None and HEADER_DROPPED_PARAMS not in result.headers


@pytest.mark.parametrize("stream", [False, True])
async def test_a_named_model_that_does_not_take_one_refuses_it(stream: bool) -> None:
    small, large = ScriptedEngine(model="small-model"), ScriptedEngine(model="large-model")
    with pytest.raises(UnsupportedParameterError) as info:
        await service(small, large).create(parse("small-model", reasoning_effort="high", stream=stream))
    assert info.value.param == "reasoning_effort" and info.value.status_code == 400
    assert "small-model" in info.value.message and "large-model" in info.value.message
    assert not small.requests and not large.requests


async def test_a_routed_request_is_refused_when_no_tier_takes_one() -> None:
    small, large = ScriptedEngine(model="small-model"), ScriptedEngine(model="large-model")
    chat = service(small, large, large_params=frozenset({"reasoning_effort"}))
    with pytest.raises(UnsupportedParameterError) as info:
        await chat.create(parse(reasoning_effort="high", verbosity="low"))
    assert info.value.param == "verbosity" and "any model here" in info.value.message
    assert not small.requests and not large.requests


async def test_a_refused_effort_moves_a_routed_request_to_a_tier_without_it() -> None:
    # A reasoning model that does not know the value (OpenAI adds them often): the routed
    # request is answered by the other tier, without the parameter, and says why.
    refusal = ModelRefusedParameterError(
        "large-model refused the reasoning_effort: Unsupported value", param="reasoning_effort"
    )
    small, large = ScriptedEngine(model="small-model"), ScriptedEngine(model="large-model", fail_before=refusal)
    result = await service(small, large).create(parse(reasoning_effort="max"))
    assert isinstance(result, ChatResult)
    assert result.headers[HEADER_TIER] == "small"
    assert result.headers[HEADER_REASON] == "fallback:refused"
    assert result.headers[HEADER_DROPPED_PARAMS] == "reasoning_effort"
    assert small.requests[-1].reasoning_effort is None
    # Named, the model's refusal is the client's answer.
    with pytest.raises(ModelRefusedParameterError):
        await service(small, large).create(parse("large-model", reasoning_effort="max"))


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"reasoning_effort": "Very High"}, "reasoning_effort"),
        ({"reasoning_effort": 3}, "reasoning_effort"),
        ({"verbosity": "terse"}, "verbosity"),
    ],
)
def test_malformed_values_are_400s(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse(**fields)
    assert info.value.param == param and info.value.status_code == 400


def test_the_responses_api_maps_reasoning_effort_and_text_verbosity() -> None:
    request = ResponsesRequest.model_validate(
        {"model": "router", "input": "x", "reasoning": {"effort": "minimal"}, "text": {"verbosity": "high"}}
    )
    chat = chat_form(request).request
    assert (chat.reasoning_effort, chat.verbosity) == ("minimal", "high")
    assert chat.model_params() == {"reasoning_effort": "minimal", "verbosity": "high"}
    plain = chat_form(ResponsesRequest.model_validate({"model": "router", "input": "x", "reasoning": {}})).request
    assert plain.model_params() == {}


def test_usage_reports_reasoning_and_cached_tokens_only_when_there_are_some() -> None:
    from gateway.protocol import Usage

    plain = Usage.counted(5, 3).model_dump()
    assert plain == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    detailed = Usage.counted(5, 10, reasoning_tokens=7, cached_tokens=4).model_dump()
    assert detailed["completion_tokens_details"] == {"reasoning_tokens": 7}
    assert detailed["prompt_tokens_details"] == {"cached_tokens": 4}
    assert detailed["total_tokens"] == 15
