"""A :class:`~gateway.engine.ChatEngine` that forwards to a model deployment through its handle."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from gateway.engine import ChatEngine, Completion, EngineDelta, GenerationRequest
from gateway.errors import EngineOverloadedError, GatewayError, ServiceUnavailableError, UpstreamError

__all__ = ["DeploymentHandleEngine", "translate_ray_error"]


def translate_ray_error(exc: BaseException, target: str) -> GatewayError:
    """Map what a handle call raises to the gateway's exception tree."""
    from ray import exceptions as ray_exceptions
    from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

    if isinstance(exc, GatewayError):
        cause = getattr(exc, "cause", None)
        return cause if isinstance(cause, GatewayError) else exc
    if isinstance(exc, ray_exceptions.RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, GatewayError):
            return cause
        return UpstreamError(f"{target} failed: {type(cause or exc).__name__}")
    if isinstance(exc, BackPressureError):
        return EngineOverloadedError(f"{target} is overloaded; retry shortly", retry_after=1)
    if isinstance(
        exc, (DeploymentUnavailableError, ray_exceptions.RayActorError, ray_exceptions.ActorUnavailableError)
    ):
        return ServiceUnavailableError(f"{target} is unavailable; retry shortly", retry_after=2)
    return UpstreamError(f"{target} failed: {type(exc).__name__}")


class DeploymentHandleEngine(ChatEngine):
    """Calls ``stream``/``complete`` on a :class:`deployments.small_model.SmallModelDeployment`."""

    def __init__(self, handle: Any, target: str, *, report_model_as: str | None = None) -> None:
        self._handle = handle
        self._stream_handle = handle.options(stream=True)
        self._target = target
        self._report_model_as = report_model_as

    async def start(self) -> None:
        """Nothing to start: the deployment owns the engine."""

    def relabelled(self, model: str) -> DeploymentHandleEngine:
        """The same deployment, reporting ``model`` as the model that answered."""
        return DeploymentHandleEngine(self._handle, model, report_model_as=model)

    def _relabel(self, model: str) -> str:
        return self._report_model_as or model

    async def stream(self, request: GenerationRequest) -> AsyncIterator[EngineDelta]:
        """Stream deltas from the deployment; closing this iterator cancels the remote call."""
        response = self._stream_handle.stream.remote(request)
        try:
            async for delta in response:
                if self._report_model_as is not None:
                    delta = dataclasses.replace(delta, model=self._report_model_as)
                yield delta
        except Exception as exc:
            raise translate_ray_error(exc, self._target) from exc
        finally:
            response.cancel()

    async def complete(self, request: GenerationRequest) -> Completion:
        """One remote call for a whole completion."""
        try:
            completion: Completion = await self._handle.complete.remote(request)
        except Exception as exc:
            raise translate_ray_error(exc, self._target) from exc
        if self._report_model_as is not None:
            completion = dataclasses.replace(completion, model=self._report_model_as)
        return completion

    async def check_health(self) -> None:
        """Ask the deployment for its health."""
        try:
            await self._handle.check_health.remote()
        except Exception as exc:
            raise translate_ray_error(exc, self._target) from exc
