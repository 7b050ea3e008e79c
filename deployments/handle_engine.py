"""A :class:`~gateway.engine.ChatEngine` that forwards to a model deployment through its handle."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from deployments.replica_watch import ReplicaWatch
from gateway.engine import ChatEngine, Completion, EngineDelta, GenerationRequest
from gateway.errors import (
    EngineDeadError,
    EngineOverloadedError,
    GatewayError,
    ServiceUnavailableError,
    UpstreamError,
)

__all__ = ["DeploymentHandleEngine", "EngineRefusal", "translate_ray_error"]

_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True, slots=True)
class EngineRefusal:
    """A gateway error the model deployment's engine raised, sent to the caller as a value.

    Raised inside a replica, Serve logs it as a failed request with its whole traceback at
    ERROR, so every prompt over the context window, every schema the engine cannot compile
    and every request refused at capacity would read as an incident in an operator's logs.
    The deployment returns (or, in a stream, yields) this instead, and
    :class:`DeploymentHandleEngine` raises the error on the caller's side, where it is
    handled like any other tier's. Anything else the engine raises stays an exception.
    """

    error: GatewayError


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


#: Seconds a client is told to wait when the deployment has no running replica: about a
#: vLLM cold start is left at the moment a crash is noticed.
NO_REPLICA_RETRY_AFTER_S = 30


class DeploymentHandleEngine(ChatEngine):
    """Calls ``stream``/``complete`` on a :class:`deployments.small_model.SmallModelDeployment`.

    With a ``watch``, calls fail fast with :class:`ServiceUnavailableError` while the deployment
    has no running replica, instead of queueing in Serve until one starts; routed requests then
    escalate to the next tier at once. Calls already waiting when the watch sees the last
    replica gone (those sent between a crash and the controller noticing it) are cancelled
    with the same error: with no replica running, none of them can be making progress.
    """

    def __init__(
        self, handle: Any, target: str, *, report_model_as: str | None = None, watch: ReplicaWatch | None = None
    ) -> None:
        self._handle = handle
        self._stream_handle = handle.options(stream=True)
        self._target = target
        self._report_model_as = report_model_as
        self._watch = watch

    async def start(self) -> None:
        """Start the replica watch, if any: the deployment owns the engine."""
        if self._watch is not None:
            await self._watch.start()

    async def shutdown(self) -> None:
        """Stop the replica watch."""
        if self._watch is not None:
            await self._watch.close()

    def relabelled(self, model: str) -> DeploymentHandleEngine:
        """The same deployment (and watch), reporting ``model`` as the model that answered."""
        return DeploymentHandleEngine(self._handle, model, report_model_as=model, watch=self._watch)

    def _no_replica(self) -> ServiceUnavailableError:
        down_s = self._watch.down_for_s if self._watch is not None else 0.0
        return ServiceUnavailableError(
            f"{self._target} has no running replica (down {down_s:.0f} s); retry shortly",
            retry_after=NO_REPLICA_RETRY_AFTER_S,
        )

    def _refuse_without_replica(self) -> None:
        if self._watch is not None and not self._watch.available:
            raise self._no_replica()

    async def _unless_replicas_vanish(self, awaitable: Awaitable[_T], cancel: Callable[[], None]) -> _T:
        """Await ``awaitable``, or raise :meth:`_no_replica` if the watch sees the deployment go down first.

        ``cancel`` cancels the remote call; it runs whenever the call is abandoned, also when
        our own caller goes away (a client disconnect), so the call never outlives it.
        """
        if self._watch is None:
            return await awaitable
        call: asyncio.Future[_T] = asyncio.ensure_future(awaitable)
        down: asyncio.Future[Any] = asyncio.ensure_future(self._watch.wait_down())
        try:
            await asyncio.wait({call, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            down.cancel()
            abandoned = not call.done()
            if abandoned:
                call.cancel()
                cancel()
                # Cancelling the remote call ends the task with Serve's RequestCancelledError,
                # which nobody awaits: read it, or asyncio logs "Task exception was never
                # retrieved" with a traceback for every abandoned call.
                call.add_done_callback(_read_outcome)
        if abandoned:
            raise self._no_replica()
        return call.result()

    def _failed(self, exc: BaseException) -> GatewayError:
        from ray import exceptions as ray_exceptions

        error = translate_ray_error(exc, self._target)
        # A dead actor (not a merely unreachable one, which may come back), or a live one
        # whose engine has died, is news the controller will only have after its next
        # failed health check; until then Serve would keep sending calls to it.
        dead = isinstance(exc, ray_exceptions.RayActorError) and not isinstance(
            exc, ray_exceptions.ActorUnavailableError
        )
        if (dead or isinstance(error, EngineDeadError)) and self._watch is not None:
            self._watch.replica_died()
        return error

    def _relabelled(self, delta: EngineDelta) -> EngineDelta:
        if self._report_model_as is None:
            return delta
        return dataclasses.replace(delta, model=self._report_model_as)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[EngineDelta]:
        """Stream deltas from the deployment; closing this iterator cancels the remote call."""
        self._refuse_without_replica()
        response = self._stream_handle.stream.remote(request)
        try:
            # Only the first delta can be stuck in Serve's queue; after it a replica is serving
            # and its death surfaces as an error by itself.
            try:
                first = await self._unless_replicas_vanish(response.__anext__(), response.cancel)
            except StopAsyncIteration:
                return
            yield self._relabelled(_delta(first))
            async for delta in response:
                yield self._relabelled(_delta(delta))
        except Exception as exc:
            raise self._failed(exc) from exc
        finally:
            response.cancel()

    async def complete(self, request: GenerationRequest) -> Completion:
        """One remote call for a whole completion."""
        self._refuse_without_replica()
        try:
            response = self._handle.complete.remote(request)
            completion: Completion | EngineRefusal = await self._unless_replicas_vanish(response, response.cancel)
            if isinstance(completion, EngineRefusal):
                raise completion.error
        except Exception as exc:
            raise self._failed(exc) from exc
        if self._report_model_as is not None:
            completion = dataclasses.replace(completion, model=self._report_model_as)
        return completion

    async def check_health(self) -> None:
        """Ask the deployment for its health."""
        self._refuse_without_replica()
        try:
            await self._handle.check_health.remote()
        except Exception as exc:
            raise self._failed(exc) from exc


def _delta(item: EngineDelta | EngineRefusal) -> EngineDelta:
    if isinstance(item, EngineRefusal):
        raise item.error
    return item


def _read_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
