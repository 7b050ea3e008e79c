"""``logit_bias``: validated as OpenAI validates it, sent to the model a request names, refused
for a routed request (token ids are one tokenizer's)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.errors import InvalidRequestError, UnsupportedParameterError
from gateway.protocol import ChatCompletionRequest
from gateway.protocol.parsing import parse_body
from gateway.serving import ChatCompletionService, ChatResult
from tests.fakes.engines import ScriptedEngine
from tests.fakes.services import two_tier_service

USER = {"role": "user", "content": "Say yes or no."}


def parse(model: str = "small-model", **fields: Any) -> ChatCompletionRequest:
    return parse_body(json.dumps({"model": model, "messages": [USER], **fields}).encode(), ChatCompletionRequest)


def service(small: ScriptedEngine, large: ScriptedEngine) -> ChatCompletionService:
    return two_tier_service(small, large)


@pytest.mark.parametrize("model", ["small-model", "large-model"])
async def test_a_named_model_gets_the_bias_as_sent(model: str) -> None:
    small, large = ScriptedEngine(model="small-model"), ScriptedEngine(model="large-model")
    result = await service(small, large).create(parse(model, logit_bias={"9891": 100, "2201": -100.0}))
    assert isinstance(result, ChatResult)
    sent = (small if model == "small-model" else large).requests[-1]
    assert sent.logit_bias == {"9891": 100.0, "2201": -100.0}
    assert sent.openai_optional_fields()["logit_bias"] == {"9891": 100.0, "2201": -100.0}


async def test_no_bias_sends_none() -> None:
    small = ScriptedEngine(model="small-model")
    await service(small, ScriptedEngine()).create(parse(logit_bias={}))
    assert small.requests[-1].logit_bias is None
    assert "logit_bias" not in small.requests[-1].openai_optional_fields()


@pytest.mark.parametrize("model", ["router", "router-lexical-0.3"])
async def test_a_routed_request_is_refused(model: str) -> None:
    small, large = ScriptedEngine(model="small-model"), ScriptedEngine(model="large-model")
    with pytest.raises(UnsupportedParameterError) as info:
        await service(small, large).create(parse(model, logit_bias={"9891": 5}))
    assert info.value.param == "logit_bias" and "named model" in info.value.message
    assert not small.requests and not large.requests
    # Its off value is no bias at all.
    assert isinstance(await service(small, large).create(parse("router", logit_bias={})), ChatResult)


@pytest.mark.parametrize(
    ("bias", "fragment"),
    [
        ({"hello": 1}, "token ids"),
        ({"-5": 1}, "token ids"),
        ({"1.5": 1}, "token ids"),
        ({"42": 101}, "less than or equal to 100"),
        ({"42": -100.5}, "greater than or equal to -100"),
        ({"42": "high"}, "valid number"),
        ({str(token): 1 for token in range(1025)}, "at most 1024"),
        ([42], "valid dictionary"),
    ],
)
def test_malformed_bias_is_a_400_naming_it(bias: Any, fragment: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse(logit_bias=bias)
    assert info.value.param is not None and info.value.param.startswith("logit_bias")
    assert fragment in info.value.message
