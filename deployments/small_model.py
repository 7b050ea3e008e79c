"""The self-hosted model tier as a Ray Serve deployment.

One replica owns one :class:`~gateway.engine.ChatEngine` (vLLM in production). The
engine class is injected by import path, so tests and other backends plug in without
touching this module. Tokens stream to the ingress through a ``DeploymentHandle``
with ``stream=True``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from deployments.handle_engine import EngineRefusal
from gateway.config import VLLMTierConfig
from gateway.engine import ChatEngine, Completion, EngineDelta, GenerationRequest, import_engine_class
from gateway.errors import GatewayError, ServiceUnavailableError

logger = logging.getLogger(__name__)

__all__ = ["SmallModelDeployment", "engine_from_tier"]


def engine_from_tier(tier: VLLMTierConfig) -> ChatEngine:
    """Construct the tier's engine from its config."""
    engine_cls = import_engine_class(tier.engine_class)
    kwargs: dict[str, Any] = {
        "model": tier.model,
        "served_model_name": tier.served_model_name,
        "max_model_len": tier.max_model_len,
        "dtype": tier.dtype,
        "gpu_memory_utilization": tier.gpu_memory_utilization,
        "max_num_seqs": tier.max_num_seqs,
        "enforce_eager": tier.enforce_eager,
        "engine_kwargs": dict(tier.engine_kwargs),
    }
    # Only when set, so engine classes without tool calling of their own need not take them.
    if tier.tool_call_parser is not None:
        kwargs["tool_call_parser"] = tier.tool_call_parser
    if tier.chat_template is not None:
        kwargs["chat_template"] = str(tier.chat_template)
    if not tier.compact_json:
        kwargs["compact_json"] = False
    return engine_cls(**kwargs)


class SmallModelDeployment:
    """Ray Serve replica body for a self-hosted tier (wrapped by ``serve.deployment`` in the builder)."""

    async def __init__(self, tier_config: dict[str, Any]) -> None:  # type: ignore[misc]  # Serve awaits async __init__
        tier = VLLMTierConfig.model_validate(tier_config)
        try:
            self._engine = engine_from_tier(tier)
            await self._engine.start()
        except GatewayError:
            raise
        except Exception as exc:  # re-raised as one light type, logged here in full
            logger.exception("the %s engine failed to start", tier.served_model_name)
            raise _for_the_controller(exc, "the engine failed to start") from None

    async def stream(self, request: GenerationRequest) -> AsyncIterator[EngineDelta | EngineRefusal]:
        """Stream a completion (called through a handle with ``stream=True``).

        A gateway error ends the stream as an :class:`EngineRefusal` item, not an exception.
        """
        try:
            async for delta in self._engine.stream(request):
                yield delta
        except GatewayError as exc:
            yield EngineRefusal(exc)

    async def complete(self, request: GenerationRequest) -> Completion | EngineRefusal:
        """Generate a whole completion (a gateway error comes back as an :class:`EngineRefusal`)."""
        try:
            return await self._engine.complete(request)
        except GatewayError as exc:
            return EngineRefusal(exc)

    async def engine_stats(self) -> dict[str, Any]:
        """The engine's request counters (``{}`` for engines without ``stats()``), for operators and fault tests."""
        stats = getattr(self._engine, "stats", None)
        return dict(stats()) if callable(stats) else {}

    async def check_health(self) -> None:
        """Ray Serve's health check: fails when the engine is dead, so Serve restarts the replica.

        The error crosses as a :class:`ServiceUnavailableError` naming the engine's own error,
        never as that error: Serve's controller unpickles it inside its control loop, and
        vLLM's ``EngineDeadError`` made the controller import ``vllm`` and ``torch`` there,
        stalling every deployment's health checks and replacements for 13-50 s on 2 cores.
        A failed start crosses the same way (it is read by the same loop).
        """
        try:
            await self._engine.check_health()
        except GatewayError:
            raise
        except Exception as exc:  # noqa: BLE001 - any engine failure fails the check, as one light type
            raise _for_the_controller(exc, "the engine is unhealthy") from None

    async def __del__(self) -> None:
        engine = getattr(self, "_engine", None)  # absent when the constructor failed
        if engine is not None:
            await engine.shutdown()


def _for_the_controller(exc: Exception, what: str) -> ServiceUnavailableError:
    """``exc`` as a light gateway error, for what Serve's controller reads (raise it ``from None``).

    The controller unpickles a failed constructor's or health check's exception inside its
    control loop; an engine's own exception class (vLLM's, torch's) makes it import that
    package there (docs/reliability.md, fault finding 8).
    """
    return ServiceUnavailableError(f"{what}: {type(exc).__name__}: {exc}", retry_after=5)
