"""``n``: several choices per request, stream and not, with usage over all of them."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from deployments.openai_responses import ChunkReader, completion_from_openai
from gateway.engine import CompletionChoice, EngineDelta, GenerationRequest, ToolCallPart, collect_completion
from gateway.errors import InvalidRequestError
from gateway.protocol import ChatCompletionRequest
from gateway.protocol.parsing import parse_body
from gateway.serving import ChatCompletionService, ChatResult, StreamResult, Tier
from gateway.state.rate_limit import estimate_tokens
from tests.fakes.engines import ScriptedEngine

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def parse(**fields: Any) -> ChatCompletionRequest:
    body = {"model": "small-model", "messages": [{"role": "user", "content": "Hi"}], **fields}
    return parse_body(json.dumps(body).encode(), ChatCompletionRequest)


def service(small: ScriptedEngine, large: ScriptedEngine | None = None) -> ChatCompletionService:
    tiers = [
        Tier("small", "small-model", small, 16, 5.0),
        Tier("large", "large-model", large or ScriptedEngine(model="large-model"), 16, 5.0, supports_tools=True),
    ]
    return ChatCompletionService(
        tiers, virtual_model_name="router", default_tier="small", max_tokens_limit=100, max_choices=4
    )


@pytest.mark.parametrize(
    ("n", "fragment"), [(0, "greater than or equal to 1"), (129, "less than or equal to 128"), ("two", "integer")]
)
def test_n_outside_openais_range_is_a_400(n: Any, fragment: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse(n=n)
    assert info.value.param == "n" and fragment in info.value.message


async def test_n_over_the_gateways_cap_is_a_400_before_any_engine_call() -> None:
    small = ScriptedEngine(model="small-model")
    with pytest.raises(InvalidRequestError) as info:
        await service(small).create(parse(n=5))
    assert (info.value.param, info.value.message) == ("n", "n is 5; this gateway allows at most 4")
    assert small.requests == []


async def test_a_non_stream_answer_has_n_choices_and_usage_over_all() -> None:
    small = ScriptedEngine(model="small-model")
    result = await service(small).create(parse(n=3, logprobs=True))
    assert isinstance(result, ChatResult)
    assert small.requests[0].n == 3
    data = result.response.model_dump(mode="json")
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in data["choices"]] == [
        (0, "Hello, world", "stop"),
        (1, "Hello, world#1", "stop"),
        (2, "Hello, world#2", "stop"),
    ]
    # Each choice carries its own tokens' logprobs.
    assert ["".join(t["token"] for t in c["logprobs"]["content"]) for c in data["choices"]] == ["Hello, world"] * 3
    assert data["usage"] == {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}


async def test_a_stream_keeps_going_until_every_choice_has_finished() -> None:
    # Choice 0 finishes before choice 1's last piece arrives: that piece must not be lost.
    result = await service(ScriptedEngine(["a", "b"], model="small-model")).create(
        parse(n=2, stream=True, stream_options={"include_usage": True})
    )
    assert isinstance(result, StreamResult)
    frames = [frame.decode() async for frame in result.frames]
    chunks = [json.loads(f[6:]) for f in frames if f.startswith("data: {")]
    text: dict[int, str] = {}
    finish: dict[int, str] = {}
    roles = []
    for chunk in chunks[:-1]:
        (choice,) = chunk["choices"]
        text[choice["index"]] = text.get(choice["index"], "") + (choice["delta"].get("content") or "")
        if choice["delta"].get("role"):
            roles.append(choice["index"])
        if choice["finish_reason"]:
            finish[choice["index"]] = choice["finish_reason"]
    assert roles == [0, 1]
    assert text == {0: "ab", 1: "ab#1"}
    assert finish == {0: "stop", 1: "stop"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4
    assert frames[-1] == "data: [DONE]\n\n"


async def test_each_choice_makes_its_own_tool_calls() -> None:
    large = ScriptedEngine(model="large-model")
    result = await service(ScriptedEngine(), large).create(parse(model="large-model", n=2, tools=[TOOL]))
    assert isinstance(result, ChatResult)
    assert [(c.index, c.finish_reason) for c in result.response.choices] == [(0, "tool_calls"), (1, "tool_calls")]
    assert all([t.function.name for t in c.message.tool_calls or []] == ["f"] for c in result.response.choices)


async def test_collect_completion_joins_pieces_per_choice() -> None:
    async def deltas() -> Any:
        yield EngineDelta("a", index=1)
        yield EngineDelta("x", index=0)
        yield EngineDelta("b", "length", index=1)
        yield EngineDelta("", "stop", 3, 4, "m", tool_calls=(ToolCallPart(0, "c", "f", "{}"),), index=0)

    completion = await collect_completion(deltas())
    assert completion.choices() == (
        CompletionChoice(0, "x", "stop", (), (ToolCallPart(0, "c", "f", "{}"),)),
        CompletionChoice(1, "ab", "length"),
    )
    assert (completion.prompt_tokens, completion.completion_tokens, completion.model) == (3, 4, "m")


def test_engines_ask_upstreams_for_n_only_when_above_one() -> None:
    assert GenerationRequest("r", [], 8, n=3).openai_optional_fields() == {"n": 3}
    assert "n" not in GenerationRequest("r", [], 8).openai_optional_fields()


def test_the_rate_limit_estimate_counts_every_choices_budget() -> None:
    body = {"messages": [{"role": "user", "content": "x" * 40}], "max_tokens": 100}
    assert estimate_tokens({**body, "n": 3}, 256) - estimate_tokens(body, 256) == 200


def test_upstream_chunks_of_several_choices_become_indexed_deltas() -> None:
    reader = ChunkReader("m")
    chunks: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"index": 1, "delta": {"content": "b"}}]},
        {"choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": "stop"}]},
        {"choices": [{"index": 1, "delta": {}, "finish_reason": "length"}]},
        {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 6}},
    ]
    deltas = [delta for chunk in chunks for delta in reader.feed(chunk)]
    assert [(d.index, d.text, d.finish_reason) for d in deltas] == [(1, "b", None), (0, "a", None)]
    closing = reader.finish()
    assert [(d.index, d.finish_reason, d.prompt_tokens, d.completion_tokens) for d in closing] == [
        (0, "stop", 4, 6),
        (1, "length", 4, 6),
    ]
    assert [(d.index, d.finish_reason) for d in ChunkReader("m").finish()] == [(0, "stop")]


@pytest.mark.parametrize("as_objects", [False, True])
def test_whole_answers_of_several_choices_keep_every_choice(as_objects: bool) -> None:
    data: dict[str, Any] = {
        "model": "up",
        "choices": [
            {"index": 1, "message": {"content": "second"}, "finish_reason": "length"},
            {"index": 0, "message": {"content": None, "tool_calls": [{"id": "c", "function": {"name": "f"}}]}},
        ],
        "usage": {"prompt_tokens": 2, "completion_tokens": 7},
    }

    def objects(value: Any) -> Any:
        if isinstance(value, dict):
            return SimpleNamespace(**{k: objects(v) for k, v in value.items()})
        if isinstance(value, list):
            return [objects(v) for v in value]
        return value

    response = objects(data) if as_objects else data
    completion = completion_from_openai(response, "m")
    assert completion.choices() == (
        CompletionChoice(0, "", None, (), (ToolCallPart(0, "c", "f", ""),)),
        CompletionChoice(1, "second", "length"),
    )
    assert (completion.prompt_tokens, completion.completion_tokens) == (2, 7)


class _FakeVLLM:
    """Stands in for vLLM's ``AsyncLLM``: records the sampling parameters, streams scripted outputs."""

    errored = False

    def __init__(self, outputs: list[list[tuple[int, str, str | None]]]) -> None:
        self.outputs = outputs
        self.params: Any = None

    async def generate(self, prompt: Any, params: Any, request_id: str, trace_headers: Any = None) -> Any:
        self.params = params
        for step in self.outputs:
            pieces = [
                SimpleNamespace(index=index, text=text, token_ids=[1] * len(text), finish_reason=finish, logprobs=None)
                for index, text, finish in step
            ]
            yield SimpleNamespace(outputs=pieces)


def _vllm_engine(fake: _FakeVLLM) -> Any:
    from deployments.vllm_engine import VLLMChatEngine

    engine = VLLMChatEngine(model="unused", served_model_name="small")
    engine._engine = fake
    engine._tokenizer = SimpleNamespace(apply_chat_template=lambda *a, **k: [1, 2, 3])
    return engine


async def test_vllm_samples_choices_in_parallel() -> None:
    fake = _FakeVLLM([[(1, "b", None), (0, "a", None)], [(0, "c", "stop"), (1, "d", "length")]])
    request = GenerationRequest("r", [{"role": "user", "content": "x"}], max_tokens=5, n=2, temperature=0.8)
    completion = await collect_completion(_vllm_engine(fake).stream(request))
    assert fake.params.n == 2
    assert [(c.index, c.text, c.finish_reason) for c in completion.choices()] == [
        (0, "ac", "stop"),
        (1, "bd", "length"),
    ]
    assert (completion.prompt_tokens, completion.completion_tokens) == (3, 4)


async def test_vllm_greedy_choices_are_one_decode_sent_n_times() -> None:
    # vLLM refuses n > 1 with temperature 0; OpenAI answers with n identical choices.
    fake = _FakeVLLM([[(0, "ab", None)], [(0, "c", "stop")]])
    request = GenerationRequest("r", [{"role": "user", "content": "x"}], max_tokens=5, n=3, temperature=0)
    completion = await collect_completion(_vllm_engine(fake).stream(request))
    assert fake.params.n == 1
    assert [(c.index, c.text, c.finish_reason) for c in completion.choices()] == [
        (0, "abc", "stop"),
        (1, "abc", "stop"),
        (2, "abc", "stop"),
    ]
    assert completion.completion_tokens == 9  # the tokens of every choice, as OpenAI counts them
