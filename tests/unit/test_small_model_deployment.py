"""The small-model deployment's health check: what it raises must be cheap for Serve's controller.

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
from collections.abc import AsyncIterator
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

    async def shutdown(self) -> None:
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


def _failed_health_check() -> ServiceUnavailableError:
    """Build the deployment around :class:`DeadEngine` as Serve would and run its health check."""

    async def run() -> ServiceUnavailableError:
        deployment = _Replica.__new__(_Replica)
        await deployment.__init__({"served_model_name": "small", "engine_class": f"{__name__}:DeadEngine"})  # type: ignore[misc]
        try:
            with pytest.raises(ServiceUnavailableError) as raised:
                await deployment.check_health()
        finally:
            await SmallModelDeployment.__del__(deployment)
        return raised.value

    return asyncio.run(run())


def test_dead_engine_fails_the_health_check_with_a_gateway_error() -> None:
    error = _failed_health_check()
    assert "EngineCoreDied" in error.message and "EngineCore encountered an issue" in error.message
    assert error.__cause__ is None and error.__suppress_context__


def test_health_check_error_unpickles_without_importing_the_engine(tmp_path: Path) -> None:
    blob = tmp_path / "error.pickle"
    blob.write_bytes(pickle.dumps(_failed_health_check()))
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
