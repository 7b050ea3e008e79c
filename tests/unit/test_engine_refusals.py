"""A model deployment's engine refusing a request: the error crosses the handle as a value.

Raised inside a replica, a gateway error made Serve log a failed request with its traceback
at ERROR (``Request failed.`` and ~30 lines), so every prompt over the small model's context
window read as an incident in the operator's logs. The deployment now sends it back as an
:class:`EngineRefusal` and the handle engine raises it again: the caller sees the same error.
(Serve's local testing mode used here logs no failed requests either way;
``tests/serve/test_http_errors.py`` checks the replicas' logs of a real Serve.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from ray import serve

from deployments.handle_engine import DeploymentHandleEngine, EngineRefusal
from deployments.small_model import SmallModelDeployment
from gateway.engine import ChatEngine, Completion, EngineDelta, GenerationRequest
from gateway.errors import EngineOverloadedError, GatewayError, InvalidRequestError


class RefusingEngine(ChatEngine):
    """Refuses a prompt that says "long" before its first token, "busy" at capacity, and
    fails "late" after one token; anything else is answered."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs

    async def start(self) -> None:
        return None

    async def stream(self, request: GenerationRequest) -> AsyncIterator[EngineDelta]:
        prompt = request.messages[-1]["content"]
        if prompt == "long":
            raise InvalidRequestError("too long", param="messages", code="context_length_exceeded")
        if prompt == "busy":
            raise EngineOverloadedError("small is at capacity", retry_after=1)
        yield EngineDelta(text="one", model="small")
        if prompt == "late":
            raise InvalidRequestError("the schema cannot be met", param="response_format")
        yield EngineDelta(text=" two", model="small", finish_reason="stop")


class _Body(SmallModelDeployment):
    """The deployment body without Serve (which would await its ``async __del__``)."""

    def __del__(self) -> None:  # type: ignore[override]
        return None


def _request(prompt: str) -> GenerationRequest:
    return GenerationRequest(request_id=prompt, messages=[{"role": "user", "content": prompt}], max_tokens=4)


@pytest.fixture(scope="module")
def engine() -> Iterator[DeploymentHandleEngine]:
    app = serve.deployment(SmallModelDeployment, name="refusing").bind(
        {"served_model_name": "small", "engine_class": f"{__name__}:RefusingEngine"}
    )
    handle = serve.run(app, name="refusals", route_prefix=None, _local_testing_mode=True)
    yield DeploymentHandleEngine(handle, "small")


async def _collect(engine: ChatEngine, prompt: str) -> list[str]:
    return [delta.text async for delta in engine.stream(_request(prompt))]


@pytest.mark.parametrize("prompt", ["long", "busy", "late"])
def test_the_caller_gets_the_engines_own_error_from_a_stream_and_a_completion(
    engine: DeploymentHandleEngine, prompt: str
) -> None:
    seen: list[str] = []

    async def stream() -> None:
        async for delta in engine.stream(_request(prompt)):
            seen.append(delta.text)

    with pytest.raises(GatewayError) as streamed:
        asyncio.run(stream())
    with pytest.raises(GatewayError) as completed:
        asyncio.run(engine.complete(_request(prompt)))
    for error in (streamed.value, completed.value):
        assert type(error) is (EngineOverloadedError if prompt == "busy" else InvalidRequestError)
        assert (error.param, error.code, error.retry_after) == {
            "long": ("messages", "context_length_exceeded", None),
            "busy": (None, "overloaded", 1),
            "late": ("response_format", None, None),
        }[prompt]
    assert seen == (["one"] if prompt == "late" else [])


def test_an_answered_request_is_unchanged(engine: DeploymentHandleEngine) -> None:
    assert asyncio.run(_collect(engine, "fine")) == ["one", " two"]
    completion = asyncio.run(engine.complete(_request("fine")))
    assert isinstance(completion, Completion) and completion.text == "one two"


def test_the_deployment_sends_refusals_as_values() -> None:
    async def run() -> tuple[Completion | EngineRefusal, list[EngineDelta | EngineRefusal]]:
        deployment = _Body.__new__(_Body)
        deployment._engine = RefusingEngine()
        completed = await deployment.complete(_request("long"))
        streamed = [item async for item in deployment.stream(_request("late"))]
        return completed, streamed

    completed, streamed = asyncio.run(run())
    assert isinstance(completed, EngineRefusal) and completed.error.code == "context_length_exceeded"
    assert isinstance(streamed[0], EngineDelta) and isinstance(streamed[-1], EngineRefusal)
