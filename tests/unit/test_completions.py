"""``/v1/completions``: parsed as OpenAI parses it, served raw by tiers that complete text, and
answered as ``text_completion`` objects (logprobs in the legacy shape)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.errors import InvalidRequestError, UnsupportedParameterError, UpstreamError
from gateway.protocol import ChatCompletionChunk, ChatCompletionResponse
from gateway.protocol.completions import CompletionRequest, reject_unsupported_completion
from gateway.protocol.parsing import parse_body
from gateway.serving import ChatCompletionService, ChatResult
from gateway.serving.completions_endpoint import _completion_frames, completion_chat_form, completion_response
from gateway.serving.streaming import StreamItem
from tests.fakes.engines import ScriptedEngine
from tests.fakes.services import two_tier_service


def parse(**fields: Any) -> CompletionRequest:
    body = {"model": "small-model", "prompt": "Once upon a time", **fields}
    request = parse_body(json.dumps(body).encode(), CompletionRequest)
    reject_unsupported_completion(request)
    return request


def service(
    small: ScriptedEngine, large: ScriptedEngine, *, score: float = 0.9, small_completes: bool = True
) -> ChatCompletionService:
    return two_tier_service(small, large, score=score, small_options={"completes_text": small_completes})


# -- the request ------------------------------------------------------------------------------


def test_a_prompt_becomes_one_raw_user_message() -> None:
    chat = completion_chat_form(parse(prompt=["Once upon a time"], logprobs=2, stop="\n", n=2, seed=3))
    assert chat.raw_prompt and [m.model_dump(exclude_none=True) for m in chat.messages] == [
        {"role": "user", "content": "Once upon a time"}
    ]
    assert (chat.max_tokens, chat.logprobs, chat.top_logprobs, chat.stop, chat.n, chat.seed) == (
        16,
        True,
        2,
        "\n",
        2,
        3,
    )
    plain = completion_chat_form(parse(max_tokens=40))
    assert plain.max_tokens == 40 and not plain.logprobs
    # A chat body cannot claim to be a raw prompt.
    claimed = parse_body(
        json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], "raw_prompt": True}).encode(),
        type(chat),
    )
    assert not claimed.raw_prompt


@pytest.mark.parametrize(
    ("fields", "param", "error", "fragment"),
    [
        ({"prompt": ["a", "b"]}, "prompt", InvalidRequestError, "one prompt per request"),
        ({"prompt": [1, 2, 3]}, "prompt", InvalidRequestError, "one prompt per request"),
        ({"prompt": [[1, 2, 3]]}, "prompt", InvalidRequestError, "token-id prompts"),
        ({"prompt": ""}, "prompt", InvalidRequestError, "must not be empty"),
        ({"prompt": None}, "prompt", InvalidRequestError, "string"),
        ({"logprobs": 6}, "logprobs", InvalidRequestError, "less than or equal to 5"),
        ({"stop": ["a", ""]}, "stop", InvalidRequestError, "must not be empty"),
        ({"stop": ["a"] * 5}, "stop", InvalidRequestError, "at most 4 items"),
        ({"max_tokens": 0}, "max_tokens", InvalidRequestError, "greater than or equal to 1"),
        ({"echo": True}, "echo", UnsupportedParameterError, "echo"),
        ({"suffix": "}"}, "suffix", UnsupportedParameterError, "fill-in-the-middle"),
        ({"best_of": 3}, "best_of", UnsupportedParameterError, "best_of"),
        ({"logit_bias": {"x": 1}}, "logit_bias", InvalidRequestError, "token ids"),
    ],
)
def test_bad_or_unsupported_fields_are_400s_naming_them(
    fields: dict[str, Any], param: str, error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error) as info:
        completion_chat_form(parse(**fields))
    assert getattr(info.value, "param", "").startswith(param) and fragment in str(info.value)


def test_off_values_pass() -> None:
    parse(echo=False, suffix=None, best_of=2, n=2, logprobs=0, stream_options={"include_usage": True})


# -- routing ----------------------------------------------------------------------------------


async def test_a_named_text_tier_gets_the_raw_prompt() -> None:
    small, large = ScriptedEngine(model="small-model"), ScriptedEngine(model="large-model")
    result = await service(small, large).create(completion_chat_form(parse()))
    assert isinstance(result, ChatResult) and result.headers["x-slm-router-tier"] == "small"
    sent = small.requests[-1]
    assert sent.raw_prompt and sent.messages == [{"role": "user", "content": "Once upon a time"}]


async def test_a_routed_prompt_scored_for_a_chat_only_tier_goes_to_one_that_completes_text() -> None:
    small, large = ScriptedEngine(model="small-model"), ScriptedEngine(model="large-model")
    result = await service(small, large, score=0.9).create(completion_chat_form(parse(model="router")))
    assert isinstance(result, ChatResult)
    assert (result.headers["x-slm-router-tier"], result.headers["x-slm-router-reason"]) == ("small", "completions")
    assert not large.requests


async def test_no_failover_to_a_tier_that_cannot_complete_text() -> None:
    small = ScriptedEngine(model="small-model", fail_before=UpstreamError("small is down"))
    large = ScriptedEngine(model="large-model")
    with pytest.raises(UpstreamError):
        await service(small, large, score=0.1).create(completion_chat_form(parse(model="router")))
    assert not large.requests


async def test_a_chat_model_named_at_completions_is_refused() -> None:
    small, large = ScriptedEngine(model="small-model"), ScriptedEngine(model="large-model")
    with pytest.raises(InvalidRequestError) as info:
        await service(small, large).create(completion_chat_form(parse(model="large-model")))
    assert (info.value.param, info.value.code) == ("model", "model_not_supported")
    assert "/v1/chat/completions" in info.value.message and "small-model" in info.value.message
    with pytest.raises(UnsupportedParameterError, match="no model here serves the completions API"):
        await service(small, large, small_completes=False).create(completion_chat_form(parse(model="router")))
    assert not small.requests and not large.requests


# -- the answer -------------------------------------------------------------------------------

TOKENS = [
    {
        "token": "Hello",
        "logprob": -0.25,
        "bytes": [72],
        "top_logprobs": [{"token": "Hello", "logprob": -0.25, "bytes": [72]}],
    },
    {
        "token": ", world",
        "logprob": -0.5,
        "bytes": [44],
        "top_logprobs": [{"token": ", world", "logprob": -0.5, "bytes": [44]}],
    },
]


def test_a_chat_answer_in_the_completions_shape() -> None:
    chat = ChatCompletionResponse.model_validate(
        {
            "id": "chatcmpl-abc",
            "created": 7,
            "model": "small-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello, world"},
                    "finish_reason": "length",
                    "logprobs": {"content": TOKENS, "refusal": None},
                }
            ],
            "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
        }
    )
    body = json.loads(completion_response(chat).model_dump_json())
    assert body["id"] == "cmpl-abc" and body["object"] == "text_completion" and body["model"] == "small-model"
    [choice] = body["choices"]
    assert (choice["text"], choice["finish_reason"], choice["index"]) == ("Hello, world", "length", 0)
    assert choice["logprobs"] == {
        "tokens": ["Hello", ", world"],
        "token_logprobs": [-0.25, -0.5],
        "top_logprobs": [{"Hello": -0.25}, {", world": -0.5}],
        "text_offset": [0, 5],
    }
    assert body["usage"]["total_tokens"] == 6


async def test_stream_chunks_in_the_completions_shape() -> None:
    def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk.model_validate(
            {"id": "chatcmpl-s", "created": 1, "model": "small-model", "choices": choices, "usage": usage}
        )

    items: list[StreamItem] = [
        chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}}]),  # role only: dropped
        chunk([{"index": 0, "delta": {"content": "Hello"}, "logprobs": {"content": TOKENS[:1], "refusal": None}}]),
        chunk([{"index": 0, "delta": {"content": ", world"}, "logprobs": {"content": TOKENS[1:], "refusal": None}}]),
        chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]),
        chunk([], usage={"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}),
        UpstreamError("the model failed mid-stream"),
    ]

    async def stream() -> AsyncIterator[StreamItem]:
        for item in items:
            yield item

    frames = [frame async for frame in _completion_frames(stream(), wants_logprobs=True)]
    assert frames[-1] == b"data: [DONE]\n\n"
    payloads = [json.loads(frame[len(b"data: ") :]) for frame in frames[:-1]]
    assert [p["choices"][0]["text"] for p in payloads[:3]] == ["Hello", ", world", ""]
    assert all(p["object"] == "text_completion" and p["id"] == "cmpl-s" for p in payloads[:4])
    assert [p["choices"][0]["logprobs"]["text_offset"] for p in payloads[:2]] == [[0], [5]]
    assert payloads[2]["choices"][0]["finish_reason"] == "stop"
    assert payloads[3]["choices"] == [] and payloads[3]["usage"]["total_tokens"] == 6
    assert payloads[4]["error"]["message"] == "the model failed mid-stream"
