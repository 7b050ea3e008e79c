"""Failing fast while a model deployment has no running replica (instead of queueing in Serve)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest
from ray import exceptions as ray_exceptions

from deployments.handle_engine import NO_REPLICA_RETRY_AFTER_S, DeploymentHandleEngine
from deployments.replica_watch import ReplicaWatch
from gateway.engine import Completion, GenerationRequest
from gateway.errors import (
    EngineDeadError,
    EngineOverloadedError,
    ServiceUnavailableError,
    UpstreamError,
)


class ScriptedCounter:
    """Answers the watch's polls from a list; an exception instance is raised."""

    def __init__(self, answers: list[int | Exception | None]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, str]] = []

    def __call__(self, app: str, deployment: str) -> int | None:
        self.asked.append((app, deployment))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


class FakeResponse:
    """A DeploymentResponse: awaitable once, cancellable."""

    def __init__(self, result: Any, hang: bool) -> None:
        self._result, self._hang = result, hang
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __await__(self) -> Any:
        return self._wait().__await__()

    async def _wait(self) -> Any:
        if self._hang:  # queued in Serve's router for a replica that never comes
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                if self.cancelled:  # as Serve's DeploymentResponse: its own error, not CancelledError
                    raise RuntimeError("Request was cancelled.") from None
                raise
        return self._result


class _Remote:
    def __init__(self, handle: FakeHandle, method: str) -> None:
        self._handle, self._method = handle, method

    def remote(self, request: Any = None) -> FakeResponse:
        self._handle.calls.append(self._method)
        if self._handle.raises is not None:
            raise self._handle.raises
        result = None
        if self._method == "complete":
            result = Completion(text="hi", finish_reason="stop", prompt_tokens=1, completion_tokens=1, model="small")
        response = FakeResponse(result, self._handle.hang)
        self._handle.responses.append(response)
        return response


class FakeHandle:
    """Records which deployment methods were called (a Serve handle's call surface)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.responses: list[FakeResponse] = []
        self.hang = False
        self.raises: Exception | None = None

    def options(self, **_: Any) -> FakeHandle:
        return self

    def __getattr__(self, method: str) -> _Remote:
        return _Remote(self, method)


def request() -> GenerationRequest:
    return GenerationRequest(request_id="r1", messages=[{"role": "user", "content": "hi"}], max_tokens=4)


async def test_watch_follows_the_running_count_and_fails_open() -> None:
    counter = ScriptedCounter([None, 1, 0, 0, RuntimeError("controller gone"), 0, 2])
    watch = ReplicaWatch("app", "Model-small", counter=counter)
    await watch.poll_once()
    assert watch.available  # unknown deployment: do not refuse
    await watch.poll_once()
    assert watch.available and watch.down_for_s == 0.0
    await watch.poll_once()
    assert not watch.available
    await asyncio.sleep(0.02)
    await watch.poll_once()
    assert not watch.available and watch.down_for_s >= 0.02  # down since the first zero
    await watch.poll_once()
    assert watch.available  # the controller could not be asked: fail open
    await watch.poll_once()
    await watch.poll_once()
    assert watch.available and watch.down_for_s == 0.0
    assert set(counter.asked) == {("app", "Model-small")}


async def test_watch_polls_in_the_background_until_closed() -> None:
    counter = ScriptedCounter([1, 1, 0])
    watch = ReplicaWatch("app", "Model-small", poll_s=0.01, counter=counter)
    await watch.start()
    assert watch.available
    for _ in range(200):
        if not watch.available:
            break
        await asyncio.sleep(0.01)
    assert not watch.available
    await watch.close()
    asked = len(counter.asked)
    await asyncio.sleep(0.05)
    assert len(counter.asked) == asked


@pytest.fixture
def handle() -> Iterator[FakeHandle]:
    yield FakeHandle()


async def test_engine_refuses_without_a_running_replica_and_never_calls(handle: FakeHandle) -> None:
    watch = ReplicaWatch("app", "Model-small", counter=ScriptedCounter([0]))
    engine = DeploymentHandleEngine(handle, "small-model", watch=watch)
    await engine.start()
    try:
        with pytest.raises(ServiceUnavailableError, match="no running replica") as info:
            await engine.complete(request())
        assert info.value.status_code == 503
        assert info.value.headers() == {"Retry-After": str(NO_REPLICA_RETRY_AFTER_S)}
        with pytest.raises(ServiceUnavailableError):
            stream = engine.stream(request())
            await stream.__anext__()
        with pytest.raises(ServiceUnavailableError):
            await engine.check_health()
        # The stand-in relabels the same deployment and shares its watch.
        with pytest.raises(ServiceUnavailableError):
            await engine.relabelled("standin").complete(request())
        assert handle.calls == []
    finally:
        await engine.shutdown()


async def test_engine_calls_through_while_a_replica_runs(handle: FakeHandle) -> None:
    engine = DeploymentHandleEngine(handle, "small-model", watch=ReplicaWatch("app", "d", counter=ScriptedCounter([1])))
    await engine.start()
    try:
        completion = await engine.complete(request())
        await engine.check_health()
        assert completion.text == "hi" and handle.calls == ["complete", "check_health"]
    finally:
        await engine.shutdown()


async def test_calls_waiting_when_the_last_replica_vanishes_are_cancelled(handle: FakeHandle) -> None:
    counter = ScriptedCounter([1])
    watch = ReplicaWatch("app", "Model-small", poll_s=0.01, counter=counter)
    engine = DeploymentHandleEngine(handle, "small-model", watch=watch)
    await engine.start()
    handle.hang = True
    try:
        call = asyncio.create_task(engine.complete(request()))
        await asyncio.sleep(0.05)
        assert not call.done()  # still queued: a replica was running when it was sent
        counter.answers = [0]  # the controller notices the crash
        with pytest.raises(ServiceUnavailableError, match="no running replica"):
            await asyncio.wait_for(call, 2)
        assert handle.responses[-1].cancelled
    finally:
        await engine.shutdown()


async def test_a_caller_going_away_cancels_the_remote_call(handle: FakeHandle) -> None:
    # Serve ends a cancelled call with its own error; unread, asyncio would log it with a
    # traceback ("Task exception was never retrieved") for every client that leaves.
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: reported.append(context))
    engine = DeploymentHandleEngine(handle, "small-model", watch=ReplicaWatch("app", "d", counter=ScriptedCounter([1])))
    await engine.start()
    handle.hang = True
    try:
        call = asyncio.create_task(engine.complete(request()))
        await asyncio.sleep(0.02)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert handle.responses[-1].cancelled
        await asyncio.sleep(0.01)
        gc.collect()
        await asyncio.sleep(0.01)
    finally:
        loop.set_exception_handler(previous)
        await engine.shutdown()
    assert [c["message"] for c in reported] == []


async def test_a_dead_single_replica_counts_as_down_before_the_controller_notices() -> None:
    counter = ScriptedCounter([1])
    watch = ReplicaWatch("app", "Model-small", death_grace_s=0.2, counter=counter)
    await watch.poll_once()
    watch.replica_died()
    assert not watch.available
    await asyncio.wait_for(watch.wait_down(), 1)
    await watch.poll_once()  # the controller still counts the dead replica
    assert not watch.available
    counter.answers = [0]  # it notices; a replacement is starting
    await watch.poll_once()
    assert not watch.available
    counter.answers = [1]  # the replacement runs
    await watch.poll_once()
    assert watch.available
    # Without the controller ever reporting zero, the grace period ends it.
    watch.replica_died()
    assert not watch.available
    await asyncio.sleep(0.25)
    await watch.poll_once()
    assert watch.available


async def test_a_dead_replica_among_several_leaves_the_deployment_up() -> None:
    watch = ReplicaWatch("app", "Model-small", counter=ScriptedCounter([2]))
    await watch.poll_once()
    watch.replica_died()
    assert watch.available


@pytest.mark.parametrize(
    ("error", "marks_down"),
    [
        (ray_exceptions.ActorDiedError(), True),
        (ray_exceptions.ActorUnavailableError("network blip", None), False),
        (RuntimeError("bug"), False),
        # The actor lives but its engine died: the replica serves nothing until it is replaced.
        (EngineDeadError("the small model's engine has failed"), True),
        (ServiceUnavailableError("the small model is still starting"), False),
        (EngineOverloadedError("at capacity"), False),
    ],
)
async def test_only_a_dead_actor_or_engine_marks_the_deployment_down(
    handle: FakeHandle, error: Exception, marks_down: bool
) -> None:
    watch = ReplicaWatch("app", "Model-small", counter=ScriptedCounter([1]))
    engine = DeploymentHandleEngine(handle, "small-model", watch=watch)
    await engine.start()
    handle.raises = error
    try:
        with pytest.raises(Exception) as info:
            await engine.complete(request())
        assert isinstance(info.value, ServiceUnavailableError | UpstreamError)
        assert watch.available is not marks_down
        if marks_down:  # the next call is refused here, without a handle call
            calls = len(handle.calls)
            handle.raises = None
            with pytest.raises(ServiceUnavailableError, match="no running replica"):
                await engine.complete(request())
            assert len(handle.calls) == calls
    finally:
        await engine.shutdown()
