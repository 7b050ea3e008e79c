"""``logprobs`` and ``top_logprobs``: validated like OpenAI, carried to every engine, returned in OpenAI's shape."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from deployments.vllm_engine import _token_logprobs
from gateway.engine import MIN_LOGPROB, EngineDelta, TokenLogprob, collect_completion, logprobs_from_openai
from gateway.errors import InvalidRequestError
from gateway.protocol import ChatCompletionRequest
from gateway.protocol.parsing import parse_body
from gateway.serving import ChatCompletionService, ChatResult, StreamResult, Tier
from gateway.serving.generation import generation_request
from tests.fakes.engines import ScriptedEngine


def parse(**fields: Any) -> ChatCompletionRequest:
    body = {"model": "small-model", "messages": [{"role": "user", "content": "Hi"}], **fields}
    return parse_body(json.dumps(body).encode(), ChatCompletionRequest)


def service(small: ScriptedEngine) -> ChatCompletionService:
    tiers = [Tier("small", "small-model", small, 16, 5.0), Tier("large", "large-model", ScriptedEngine(), 16, 5.0)]
    return ChatCompletionService(tiers, virtual_model_name="router", default_tier="small", max_tokens_limit=100)


@pytest.mark.parametrize(
    ("fields", "param", "fragment"),
    [
        ({"top_logprobs": 2}, "top_logprobs", "needs logprobs: true"),
        ({"logprobs": False, "top_logprobs": 2}, "top_logprobs", "needs logprobs: true"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs", "less than or equal to 20"),
        ({"logprobs": True, "top_logprobs": -1}, "top_logprobs", "greater than or equal to 0"),
        ({"logprobs": "maybe"}, "logprobs", "valid boolean"),
    ],
)
def test_bad_logprobs_requests_are_400s_naming_the_field(fields: dict[str, Any], param: str, fragment: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse(**fields)
    assert info.value.param == param
    assert fragment in info.value.message


def test_engines_get_the_fields_in_openai_shape() -> None:
    request = generation_request(
        parse(logprobs=True, top_logprobs=3), Tier("small", "small-model", ScriptedEngine(), 16, 5.0), []
    )
    assert (request.logprobs, request.top_logprobs) == (True, 3)
    assert request.openai_optional_fields() == {"logprobs": True, "top_logprobs": 3}
    plain = generation_request(
        parse(logprobs=False, top_logprobs=0), Tier("small", "small-model", ScriptedEngine(), 16, 5.0), []
    )
    assert "logprobs" not in plain.openai_optional_fields() and "top_logprobs" not in plain.openai_optional_fields()


async def test_a_non_stream_answer_carries_one_entry_per_token() -> None:
    result = await service(ScriptedEngine(["Hello", ",", " world"], model="small-model")).create(
        parse(logprobs=True, top_logprobs=2)
    )
    assert isinstance(result, ChatResult)
    choice = result.response.model_dump(mode="json")["choices"][0]
    content = choice["logprobs"]["content"]
    assert "".join(token["token"] for token in content) == choice["message"]["content"] == "Hello, world"
    assert [token["logprob"] for token in content] == [-0.25, -0.5, -0.75]
    assert content[0]["bytes"] == list(b"Hello")
    assert content[2]["top_logprobs"] == [
        {"token": " world", "logprob": -0.75, "bytes": list(b" world")},
        {"token": "alt1", "logprob": -1.75, "bytes": list(b"alt1")},
    ]
    assert choice["logprobs"]["refusal"] is None


async def test_without_logprobs_the_field_is_null() -> None:
    result = await service(ScriptedEngine(model="small-model")).create(parse())
    assert isinstance(result, ChatResult)
    assert result.response.model_dump(mode="json")["choices"][0]["logprobs"] is None


async def _chunks(result: StreamResult) -> list[dict[str, Any]]:
    frames = [frame.decode() async for frame in result.frames]
    return [json.loads(f[6:]) for f in frames if f.startswith("data: {")]


@pytest.mark.parametrize("asked", [True, False])
async def test_stream_chunks_carry_their_tokens_logprobs(asked: bool) -> None:
    result = await service(ScriptedEngine(["a", "b"], model="small-model")).create(
        parse(stream=True, logprobs=asked, top_logprobs=1 if asked else None)
    )
    assert isinstance(result, StreamResult)
    content_chunks = [c for c in await _chunks(result) if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert [c["choices"][0]["delta"]["content"] for c in content_chunks] == ["a", "b"]
    if asked:
        assert [c["choices"][0]["logprobs"]["content"] for c in content_chunks] == [
            [
                {
                    "token": "a",
                    "logprob": -0.25,
                    "bytes": [97],
                    "top_logprobs": [{"token": "a", "logprob": -0.25, "bytes": [97]}],
                }
            ],
            [
                {
                    "token": "b",
                    "logprob": -0.5,
                    "bytes": [98],
                    "top_logprobs": [{"token": "b", "logprob": -0.5, "bytes": [98]}],
                }
            ],
        ]
    else:
        assert all(c["choices"][0]["logprobs"] is None for c in content_chunks)


async def test_collect_completion_joins_the_pieces_logprobs() -> None:
    first, second = TokenLogprob("a", -0.1), TokenLogprob("b", -0.2)

    async def deltas() -> AsyncIterator[EngineDelta]:
        yield EngineDelta("a", None, 1, 1, "m", (first,))
        yield EngineDelta("", None, 1, 1, "m")
        yield EngineDelta("b", "stop", 1, 2, "m", (second,))

    completion = await collect_completion(deltas())
    assert completion.text == "ab" and completion.logprobs == (first, second)


def test_upstream_logprobs_read_from_dicts_and_sdk_objects() -> None:
    wire = {
        "content": [
            {"token": "Hi", "logprob": -0.5, "bytes": [72, 105], "top_logprobs": [{"token": "Hi", "logprob": -0.5}]},
            {"token": "!", "logprob": None, "bytes": None, "top_logprobs": []},
        ],
        "refusal": None,
    }
    from_dicts = logprobs_from_openai(wire)
    as_objects = SimpleNamespace(
        content=[
            SimpleNamespace(**{**item, "top_logprobs": [SimpleNamespace(**t) for t in item["top_logprobs"]]})
            for item in wire["content"]
        ]
    )
    assert logprobs_from_openai(as_objects) == from_dicts
    assert from_dicts[0] == TokenLogprob("Hi", -0.5, [72, 105], (TokenLogprob("Hi", -0.5, None),))
    assert from_dicts[1].logprob == MIN_LOGPROB  # JSON has no -inf: OpenAI's convention
    assert from_dicts[0].to_openai() == {
        "token": "Hi",
        "logprob": -0.5,
        "bytes": [72, 105],
        "top_logprobs": [{"token": "Hi", "logprob": -0.5, "bytes": None}],
    }
    assert logprobs_from_openai(None) == () and logprobs_from_openai({"content": None}) == ()


def _candidate(logprob: float, rank: int, text: str) -> SimpleNamespace:
    return SimpleNamespace(logprob=logprob, rank=rank, decoded_token=text)


def test_vllm_maps_keep_the_sampled_token_and_the_top_k_in_rank_order() -> None:
    # Token 7 was sampled at rank 3, outside the top 2; token 9 was the most likely.
    maps = [
        {7: _candidate(-2.0, 3, " cat"), 9: _candidate(-0.1, 1, " dog"), 4: _candidate(-1.0, 2, " cow")},
        {5: _candidate(float("-inf"), 1, "é")},
    ]
    tokens = _token_logprobs([7, 5], maps, top=2)
    assert tokens[0].token == " cat" and tokens[0].logprob == -2.0
    assert [(t.token, t.logprob) for t in tokens[0].top_logprobs] == [(" dog", -0.1), (" cow", -1.0)]
    assert tokens[1].logprob == MIN_LOGPROB and tokens[1].bytes == list("é".encode())
    assert _token_logprobs([7], maps[:1], top=0)[0].top_logprobs == ()
    assert _token_logprobs([7], None, top=2) == ()
