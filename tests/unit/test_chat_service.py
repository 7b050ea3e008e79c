from __future__ import annotations

import json

import pytest

from gateway.engine import ChatEngine, EngineDelta, GenerationRequest, collect_completion, import_engine_class
from gateway.errors import (
    ConfigError,
    EngineOverloadedError,
    InvalidRequestError,
    ModelNotFoundError,
    UpstreamTimeoutError,
)
from gateway.protocol import ChatCompletionRequest
from gateway.serving import ChatCompletionService, ChatResult, StreamResult, Tier
from tests.fakes.engines import ScriptedEngine


def service(small: ChatEngine, large: ChatEngine | None = None, timeout_s: float = 5.0) -> ChatCompletionService:
    tiers = [Tier("small", "small-model", small, default_max_tokens=16, timeout_s=timeout_s)]
    tiers.append(Tier("large", "large-model", large or ScriptedEngine(model="large-model"), 16, timeout_s))
    return ChatCompletionService(tiers, virtual_model_name="router", default_tier="small", max_tokens_limit=100)


def request(**overrides: object) -> ChatCompletionRequest:
    body: dict[str, object] = {"model": "router", "messages": [{"role": "user", "content": "hi"}]}
    body.update(overrides)
    return ChatCompletionRequest.model_validate(body)


async def read_frames(result: StreamResult) -> list[str]:
    return [frame.decode() async for frame in result.frames]


def payloads(frames: list[str]) -> list[dict[str, object]]:
    out = []
    for frame in frames:
        assert frame.startswith("data: ") and frame.endswith("\n\n")
        data = frame[len("data: ") : -2]
        if data != "[DONE]":
            out.append(json.loads(data))
    return out


async def test_non_stream_response_shape() -> None:
    engine = ScriptedEngine(model="small-model")
    result = await service(engine).create(request(temperature=0.5, seed=3, stop=["x"]))
    assert isinstance(result, ChatResult)
    response = result.response
    assert response.model == "small-model"
    assert response.choices[0].message.content == "Hello, world"
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.model_dump() == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    assert result.headers == {
        "x-slm-router-tier": "small",
        "x-slm-router-model": "small-model",
        "x-slm-router-reason": "default",
    }
    sent = engine.requests[0]
    assert (sent.temperature, sent.seed, sent.stop, sent.max_tokens) == (0.5, 3, ["x"], 16)


async def test_model_names_resolve_to_tiers() -> None:
    svc = service(ScriptedEngine(model="small-model"))
    assert svc.resolve_tier("router").name == "small"
    assert svc.resolve_tier("large-model").name == "large"
    assert svc.resolve_tier("large").name == "large"
    with pytest.raises(ModelNotFoundError):
        svc.resolve_tier("unknown")
    assert [m.id for m in svc.list_models().data] == ["router", "small-model", "large-model"]


async def test_developer_role_becomes_system_and_max_tokens_limit() -> None:
    engine = ScriptedEngine()
    await service(engine).create(
        request(messages=[{"role": "developer", "content": "rules"}, {"role": "user", "content": "q"}], max_tokens=2)
    )
    assert engine.requests[0].messages[0] == {"role": "system", "content": "rules"}
    assert engine.requests[0].max_tokens == 2
    with pytest.raises(InvalidRequestError) as info:
        await service(engine).create(request(max_completion_tokens=101))
    assert info.value.param == "max_completion_tokens"
    with pytest.raises(InvalidRequestError) as too_many:
        await service(engine).create(request(n=9))
    assert (too_many.value.param, too_many.value.message) == ("n", "n is 9; this gateway allows at most 8")
    with pytest.raises(InvalidRequestError, match="system or user"):
        await service(engine).create(request(messages=[{"role": "assistant", "content": "x"}]))


async def test_stream_frames_and_usage() -> None:
    result = await service(ScriptedEngine(model="small-model")).create(
        request(stream=True, stream_options={"include_usage": True})
    )
    assert isinstance(result, StreamResult)
    frames = await read_frames(result)
    assert frames[-1] == "data: [DONE]\n\n"
    chunks = payloads(frames)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}  # type: ignore[index]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])  # type: ignore[index]
    assert text == "Hello, world"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"  # type: ignore[index]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3  # type: ignore[index]
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}


async def test_stream_without_usage_has_no_usage_chunk() -> None:
    result = await service(ScriptedEngine()).create(request(stream=True))
    assert isinstance(result, StreamResult)
    chunks = payloads(await read_frames(result))
    assert all(c["choices"] for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"  # type: ignore[index]


async def test_failure_before_first_token_raises_before_any_byte() -> None:
    engine = ScriptedEngine(fail_before=EngineOverloadedError("full", retry_after=1))
    with pytest.raises(EngineOverloadedError):
        await service(engine).create(request(model="small-model", stream=True))
    assert engine.closed == 1


async def test_failure_mid_stream_sends_error_event_then_done() -> None:
    engine = ScriptedEngine(pieces=["a", "b", "c"], fail_after=1)
    result = await service(engine).create(request(stream=True))
    assert isinstance(result, StreamResult)
    frames = await read_frames(result)
    assert frames[-1] == "data: [DONE]\n\n"
    error = payloads(frames)[-1]
    assert set(error) == {"error"} and error["error"]["type"] == "upstream_error"  # type: ignore[index]


async def test_timeouts_become_504() -> None:
    slow = ScriptedEngine(delay_s=1.0)
    with pytest.raises(UpstreamTimeoutError):
        await service(slow, timeout_s=0.2).create(request(model="small-model"))
    with pytest.raises(UpstreamTimeoutError):
        await service(ScriptedEngine(delay_s=1.0), timeout_s=0.2).create(request(model="small-model", stream=True))


async def test_client_disconnect_closes_the_engine_stream() -> None:
    engine = ScriptedEngine(pieces=["a"] * 10)
    result = await service(engine).create(request(stream=True))
    assert isinstance(result, StreamResult)
    frames = result.frames
    await anext(frames)
    await frames.aclose()
    assert engine.closed == 1


async def test_collect_completion_and_engine_import() -> None:
    engine = ScriptedEngine(pieces=["x", "y"])
    request_ = GenerationRequest("id", [{"role": "user", "content": "q"}], max_tokens=5)
    completion = await collect_completion(engine.stream(request_))
    assert (completion.text, completion.completion_tokens, completion.finish_reason) == ("xy", 2, "stop")
    empty = await collect_completion(ScriptedEngine(pieces=[]).stream(request_))
    assert empty.text == "" and empty.completion_tokens == 0
    assert import_engine_class("tests.fakes.engines:ScriptedEngine") is ScriptedEngine
    for bad in ("no_colon", "gateway.engine:Missing", "gateway.engine:EngineDelta", "nope.module:X"):
        with pytest.raises(ConfigError):
            import_engine_class(bad)
    assert isinstance(EngineDelta("t"), EngineDelta)


async def test_closing_an_unread_stream_closes_the_engine_stream() -> None:
    # A client gone before the first frame: the frames are closed without ever being read.
    engine = ScriptedEngine(pieces=["a"] * 10)
    result = await service(engine).create(request(stream=True))
    assert isinstance(result, StreamResult)
    frames = result.frames
    await frames.aclose()
    await frames.aclose()
    assert engine.closed == 1
