"""vLLM's ``structured_outputs``: checked once, sent only to tiers that constrain decoding (a
routed request moves to one, a named hosted model is a 400, failover never drops it), refused
beside another constraint, and vLLM's old ``guided_*`` names refused rather than ignored."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.errors import GatewayError, InvalidRequestError, UnsupportedParameterError, UpstreamError
from gateway.protocol import ChatCompletionRequest, reject_unsupported
from gateway.protocol.completions import CompletionRequest
from gateway.protocol.parsing import parse_body
from gateway.serving import ChatCompletionService, ChatResult
from gateway.serving.completions_endpoint import completion_chat_form
from tests.fakes.engines import ScriptedEngine
from tests.fakes.services import two_tier_service

CHOICE = {"choice": ["positive", "negative"]}


def parse(**fields: Any) -> ChatCompletionRequest:
    body = {"model": "small-model", "messages": [{"role": "user", "content": "Great film!"}], **fields}
    request = parse_body(json.dumps(body).encode(), ChatCompletionRequest)
    reject_unsupported(request)
    return request


def refusal(**fields: Any) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        parse(**fields)
    assert info.value.status_code == 400
    return info.value


def service(
    small: ScriptedEngine, large: ScriptedEngine, *, score: float = 0.9, vllm: bool = True
) -> ChatCompletionService:
    return two_tier_service(small, large, score=score, small_options={"constrains_decoding": vllm})


# -- the request ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("constraint", "sent"),
    [
        (CHOICE, CHOICE),
        ({"regex": "[0-9]{3}"}, {"regex": "[0-9]{3}"}),
        ({"grammar": 'root ::= "yes" | "no"'}, {"grammar": 'root ::= "yes" | "no"'}),
        ({"json_object": True}, {"json_object": True}),
        # A schema as JSON text, as vLLM also takes it, is sent as the object.
        (
            {"json": '{"type": "object"}', "disable_any_whitespace": True},
            {"json": {"type": "object"}, "disable_any_whitespace": True},
        ),
    ],
)
def test_each_constraint_reaches_the_engine_by_vllm_s_names(constraint: dict[str, Any], sent: dict[str, Any]) -> None:
    request = parse(structured_outputs=constraint)
    assert request.structured_outputs is not None and request.structured_outputs.for_engine() == sent


@pytest.mark.parametrize(
    ("constraint", "param", "says"),
    [
        ({}, "structured_outputs", "exactly one"),
        ({"regex": "a", "choice": ["a"]}, "structured_outputs", "exactly one"),
        ({"choice": []}, "structured_outputs.choice", "at least 1"),
        ({"choice": [""]}, "structured_outputs.choice[0]", "at least 1"),
        ({"json": {"type": 3}}, "structured_outputs.json", "not a valid JSON Schema"),
        ({"json": "not json"}, "structured_outputs.json", "JSON Schema"),
        # A misspelt key would leave the answer unconstrained: refused, not passed by.
        ({"choices": ["a"]}, "structured_outputs.choices", "Extra inputs"),
        ({"structural_tag": "{}"}, "structured_outputs.structural_tag", "Extra inputs"),
        ({"json_object": False}, "structured_outputs", "no constraint"),
    ],
)
def test_a_bad_constraint_is_a_400_naming_the_field(constraint: dict[str, Any], param: str, says: str) -> None:
    error = refusal(structured_outputs=constraint)
    assert error.param == param and says in error.message


def test_another_constraint_beside_it_and_vllm_s_old_names_are_refused() -> None:
    error = refusal(structured_outputs=CHOICE, response_format={"type": "json_object"})
    assert isinstance(error, InvalidRequestError) and error.param == "structured_outputs"
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert refusal(structured_outputs=CHOICE, tools=tools).param == "structured_outputs"
    # Offered but declined tools constrain nothing, nor does a text format.
    assert parse(structured_outputs=CHOICE, tools=tools, tool_choice="none").structured_outputs is not None
    assert parse(structured_outputs=CHOICE, response_format={"type": "text"}).structured_outputs is not None
    for old in ("guided_choice", "guided_json", "guided_regex", "guided_grammar"):
        error = refusal(**{old: ["a"]})
        assert isinstance(error, UnsupportedParameterError) and error.param == old
        assert "structured_outputs" in error.message
    assert parse(guided_choice=None).structured_outputs is None  # the off value passes


# -- routing ----------------------------------------------------------------------------------


async def test_a_routed_request_scored_for_a_hosted_tier_goes_to_a_vllm_tier() -> None:
    small, large = ScriptedEngine(model="small-model"), ScriptedEngine(model="large-model")
    result = await service(small, large, score=0.9).create(parse(model="router", structured_outputs=CHOICE))
    assert isinstance(result, ChatResult)
    assert (result.headers["x-slm-router-tier"], result.headers["x-slm-router-reason"]) == (
        "small",
        "structured_outputs",
    )
    assert small.requests[-1].structured_outputs == CHOICE and not large.requests
    # Without the constraint the same score goes to the large tier, which is sent none.
    await service(small, large, score=0.9).create(parse(model="router"))
    assert large.requests[-1].structured_outputs is None


async def test_a_named_hosted_model_or_no_vllm_tier_is_a_400() -> None:
    small, large = ScriptedEngine(model="small-model"), ScriptedEngine(model="large-model")
    with pytest.raises(UnsupportedParameterError) as info:
        await service(small, large).create(parse(model="large-model", structured_outputs=CHOICE))
    assert info.value.param == "structured_outputs" and "small-model" in info.value.message
    with pytest.raises(UnsupportedParameterError, match="no model here is served by vLLM"):
        await service(small, large, vllm=False).create(parse(model="router", structured_outputs=CHOICE))
    assert not small.requests and not large.requests


async def test_no_failover_to_a_tier_that_would_drop_the_constraint() -> None:
    small = ScriptedEngine(model="small-model", fail_before=UpstreamError("small is down"))
    large = ScriptedEngine(model="large-model")
    with pytest.raises(UpstreamError):
        await service(small, large, score=0.1).create(parse(model="router", structured_outputs=CHOICE))
    assert not large.requests
    # Unconstrained, the same failure escalates.
    result = await service(small, large, score=0.1).create(parse(model="router"))
    assert isinstance(result, ChatResult) and result.headers["x-slm-router-tier"] == "large"


async def test_a_completion_carries_it_too() -> None:
    small, large = ScriptedEngine(model="small-model"), ScriptedEngine(model="large-model")
    body = {"model": "small-model", "prompt": "Sentiment:", "structured_outputs": {"regex": " (yes|no)"}}
    completion = parse_body(json.dumps(body).encode(), CompletionRequest)
    chat = completion_chat_form(completion)
    result = await two_tier_service(
        small, large, small_options={"completes_text": True, "constrains_decoding": True}
    ).create(chat)
    assert isinstance(result, ChatResult)
    assert small.requests[-1].raw_prompt and small.requests[-1].structured_outputs == {"regex": " (yes|no)"}
    # vLLM's old names are refused on completions as on chat, not dropped on the way.
    old = parse_body(json.dumps({**body, "structured_outputs": None, "guided_regex": "x"}).encode(), CompletionRequest)
    with pytest.raises(UnsupportedParameterError):
        reject_unsupported(completion_chat_form(old))


# -- vLLM's other decoding extensions ----------------------------------------------------------


async def test_bad_words_and_token_id_lists_go_to_vllm_tiers_only() -> None:
    small, large = ScriptedEngine(model="small-model"), ScriptedEngine(model="large-model")
    # Words are the same for every model: a routed request moves to the vLLM tier.
    result = await service(small, large, score=0.9).create(parse(model="router", bad_words=["darn"]))
    assert isinstance(result, ChatResult) and result.headers["x-slm-router-reason"] == "bad_words"
    assert small.requests[-1].bad_words == ["darn"] and not large.requests
    # Token ids are one model's: a named vLLM model gets them as sent.
    await service(small, large).create(parse(stop_token_ids=[2, 7], allowed_token_ids=[5, 6, 7]))
    sent = small.requests[-1]
    assert (sent.stop_token_ids, sent.allowed_token_ids) == ([2, 7], [5, 6, 7])
    for name, value in (("stop_token_ids", [2]), ("allowed_token_ids", [5])):
        with pytest.raises(UnsupportedParameterError, match="needs a named model") as routed:
            await service(small, large).create(parse(model="router", **{name: value}))
        assert routed.value.param == name
        with pytest.raises(UnsupportedParameterError, match="not served by vLLM") as hosted:
            await service(small, large).create(parse(model="large-model", **{name: value}))
        assert hosted.value.param == name
    # Empty lists ask for nothing: no move, nothing sent.
    await service(small, large, score=0.9).create(parse(model="router", bad_words=[], stop_token_ids=[]))
    assert large.requests and large.requests[-1].bad_words is None and large.requests[-1].stop_token_ids is None


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"stop_token_ids": [-1]}, "stop_token_ids[0]"),
        ({"allowed_token_ids": ["a"]}, "allowed_token_ids[0]"),
        ({"bad_words": [""]}, "bad_words[0]"),
        ({"bad_words": "darn"}, "bad_words"),
    ],
)
def test_bad_extension_values_are_400s_naming_them(fields: dict[str, Any], param: str) -> None:
    assert refusal(**fields).param == param
