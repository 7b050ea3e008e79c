"""The small-model deployment's start and health check: what they raise must be cheap for Serve's controller.

Serve's controller unpickles a failed health check's exception inside its control loop. When
vLLM's engine core died, vLLM raised its own ``EngineDeadError``, so unpickling it imported
``vllm`` and ``torch`` into the controller: its control loop stalled for 13-50 s on 2 cores
(py-spy showed the import under ``_check_active_health_check``), holding up every
deployment's health checks and the dead replica's replacement.
"""

from __future__ import annotations

import asyncio
import pickle
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from deployments.small_model import SmallModelDeployment
from gateway.engine import ChatEngine, EngineDelta, GenerationRequest
from gateway.errors import ServiceUnavailableError


class EngineCoreDied(Exception):
    """Stands in for vLLM's ``EngineDeadError``: a class from the engine's own (heavy) package."""


class DeadEngine(ChatEngine):
    """An engine whose core has died: its health check raises its own exception class."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs

    async def start(self) -> None:
        return None

    async def stream(self, request: GenerationRequest) -> AsyncIterator[EngineDelta]:
        raise ServiceUnavailableError("dead")
        yield  # pragma: no cover - makes this an async generator

    async def check_health(self) -> None:
        raise EngineCoreDied("EngineCore encountered an issue")


class _Replica(SmallModelDeployment):
    """The deployment body; Serve awaits its ``async __del__`` (so does the test), and Python's
    collector calling it again would only leave a coroutine nobody awaits."""

    def __del__(self) -> None:  # type: ignore[override]
        return None


class EngineThatCannotStart(DeadEngine):
    """An engine whose start fails with its own exception class (vLLM's, torch's out-of-memory)."""

    async def start(self) -> None:
        raise EngineCoreDied("not enough memory for the KV cache")


async def _replica(engine: str) -> SmallModelDeployment:
    """The deployment body built around ``engine`` (a class here) as Serve builds it."""
    deployment = _Replica.__new__(_Replica)
    config = {"served_model_name": "small", "engine_class": f"{__name__}:{engine}"}
    await deployment.__init__(config)  # type: ignore[misc]  # Serve awaits the async __init__
    return deployment


def _failed_start() -> ServiceUnavailableError:
    async def run() -> ServiceUnavailableError:
        with pytest.raises(ServiceUnavailableError) as raised:
            await _replica("EngineThatCannotStart")
        return raised.value

    return asyncio.run(run())


def _failed_health_check() -> ServiceUnavailableError:
    async def run() -> ServiceUnavailableError:
        deployment = await _replica("DeadEngine")
        try:
            with pytest.raises(ServiceUnavailableError) as raised:
                await deployment.check_health()
        finally:
            await SmallModelDeployment.__del__(deployment)
        return raised.value

    return asyncio.run(run())


def test_a_replica_that_never_started_shuts_down_quietly() -> None:
    async def run() -> None:
        deployment = _Replica.__new__(_Replica)
        config = {"served_model_name": "small", "engine_class": f"{__name__}:EngineThatCannotStart"}
        with pytest.raises(ServiceUnavailableError):
            await deployment.__init__(config)  # type: ignore[misc]
        await SmallModelDeployment.__del__(deployment)  # Serve still calls it: no AttributeError

    asyncio.run(run())


def test_dead_engine_fails_the_health_check_with_a_gateway_error() -> None:
    error = _failed_health_check()
    assert "EngineCoreDied" in error.message and "EngineCore encountered an issue" in error.message
    assert error.__cause__ is None and error.__suppress_context__


def test_failed_start_raises_a_gateway_error_naming_the_engines() -> None:
    error = _failed_start()
    assert error.message == "the engine failed to start: EngineCoreDied: not enough memory for the KV cache"
    assert error.__cause__ is None and error.__suppress_context__


@pytest.mark.parametrize("failure", [_failed_health_check, _failed_start], ids=["health check", "start"])
def test_error_unpickles_without_importing_the_engine(
    failure: Callable[[], ServiceUnavailableError], tmp_path: Path
) -> None:
    blob = tmp_path / "error.pickle"
    blob.write_bytes(pickle.dumps(failure()))
    # A fresh interpreter stands for the controller: it must not need the engine's module.
    check = (
        "import pickle, sys; e = pickle.loads(open(sys.argv[1], 'rb').read()); "
        f"assert {__name__!r} not in sys.modules, 'unpickling imported the engine module'; "
        "print(type(e).__name__, e.retry_after)"
    )
    root = Path(__file__).parents[2]
    done = subprocess.run(
        [sys.executable, "-c", check, str(blob)], cwd=root, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "ServiceUnavailableError"
