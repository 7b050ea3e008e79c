"""``reasoning_effort`` and ``verbosity``: sent to the tiers whose model takes them, refused where
no model the request may reach takes them, and reported when a routed request's tier drops them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.errors import InvalidRequestError, ModelRefusedParameterError, UnsupportedParameterError
from gateway.protocol import ChatCompletionRequest
from gateway.protocol.model_params import VLLM_PARAMS
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


def vllm_service(small: ScriptedEngine, large: ScriptedEngine, *, score: float) -> ChatCompletionService:
    return two_tier_service(small, large, score=score, small_options={"model_params": VLLM_PARAMS})


async def test_vllms_sampling_extensions_reach_the_vllm_tier_only() -> None:
    small, large = ScriptedEngine(model="small-model"), ScriptedEngine(model="large-model")
    asks = {"ignore_eos": True, "min_tokens": 3, "top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1}
    result = await vllm_service(small, large, score=0.1).create(parse(**asks))
    assert isinstance(result, ChatResult) and HEADER_DROPPED_PARAMS not in result.headers
    sent = small.requests[-1]
    assert (sent.ignore_eos, sent.min_tokens, sent.top_k, sent.min_p, sent.repetition_penalty) == (
        True,
        3,
        20,
        0.05,
        1.1,
    )
    # Routed to the hosted tier, they are dropped, and the header says which.
    result = await vllm_service(small, large, score=0.9).create(parse(ignore_eos=True, top_k=20))
    assert isinstance(result, ChatResult) and result.headers[HEADER_DROPPED_PARAMS] == "ignore_eos,top_k"
    assert large.requests[-1].ignore_eos is None and "top_k" not in large.requests[-1].openai_optional_fields()
    # Named, the hosted model refuses them; their defaults ask for nothing anywhere.
    with pytest.raises(UnsupportedParameterError) as info:
        await vllm_service(small, large, score=0.9).create(parse("large-model", ignore_eos=True))
    assert info.value.param == "ignore_eos" and "small-model" in info.value.message
    plain = await vllm_service(small, large, score=0.9).create(
        parse("large-model", ignore_eos=False, top_k=-1, min_tokens=0, repetition_penalty=1.0)
    )
    assert isinstance(plain, ChatResult) and HEADER_DROPPED_PARAMS not in plain.headers


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"top_k": -2}, "top_k"),
        ({"min_p": 1.5}, "min_p"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"min_tokens": -1}, "min_tokens"),
    ],
)
def test_malformed_vllm_extensions_are_400s(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse(**fields)
    assert info.value.param == param
