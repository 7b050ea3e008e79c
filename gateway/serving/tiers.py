"""The tiers, cheapest first, and the moves a request may make along them after scoring.

The router's score picks a tier; three things can move a request from it: the request needs
tool calling and that tier has none, the caller's key has spent its budget, or the tier
fails (failover). Each move is decided here, so the serving logic only applies it, and so
is which model-specific parameters a request may carry to which tier.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.engine import ChatEngine
from gateway.errors import (
    EngineOverloadedError,
    GatewayError,
    InvalidRequestError,
    ModelRefusedParameterError,
    RateLimitError,
    ServiceUnavailableError,
    UnsupportedParameterError,
    UpstreamError,
    UpstreamTimeoutError,
)
from gateway.protocol import ChatCompletionRequest
from gateway.protocol.tools import ToolNeed
from gateway.routing.policy import RoutingDecision

__all__ = ["Tier", "TierLadder", "failover_reason"]


@dataclass(frozen=True)
class Tier:
    """A model tier as the serving logic sees it."""

    name: str
    served_model_name: str
    engine: ChatEngine
    default_max_tokens: int
    timeout_s: float
    owned_by: str = "slm-router"
    #: Whether the tier's model takes ``tools`` and answers with tool calls.
    supports_tools: bool = False
    #: Whether the tier makes a call that ``tool_choice`` forces (``ToolNeed`` ``forced``), by
    #: constraining decoding to the function's schema (vLLM tiers; any model can).
    forced_tool_calls: bool = False
    #: Whether the provider bills a non-streamed call whether or not its answer is read (hosted
    #: APIs finish it after the connection drops). Such a call runs on when the client leaves,
    #: and its usage is charged; a self-hosted tier's call is cancelled instead, freeing the GPU.
    billed_when_abandoned: bool = False
    #: The model-specific parameters (:data:`gateway.protocol.MODEL_PARAMS`) the tier's model takes.
    model_params: frozenset[str] = frozenset()
    #: Whether the tier continues a prompt as plain text, without a chat template
    #: (``/v1/completions``): vLLM tiers do; hosted chat models do not.
    completes_text: bool = False
    #: Whether the tier takes vLLM's decoding extensions (``structured_outputs``: a choice,
    #: regex, grammar or schema; ``bad_words``; ``allowed_token_ids``; ``stop_token_ids``):
    #: vLLM tiers do.
    constrains_decoding: bool = False

    def serves(self, need: ToolNeed) -> bool:
        """Whether the tier can serve a request that needs ``need`` of tool calling."""
        return need == "none" or self.supports_tools or (need == "forced" and self.forced_tool_calls)


def failover_reason(error: GatewayError) -> str | None:
    """Why a tier's failure may move the request elsewhere (``None``: the client's fault)."""
    if isinstance(error, UpstreamTimeoutError):
        return "timeout"
    if isinstance(error, EngineOverloadedError):
        return "overloaded"
    if isinstance(error, ServiceUnavailableError):
        return "unavailable"
    if isinstance(error, UpstreamError):
        return "error"
    if isinstance(error, InvalidRequestError) and error.code == "context_length_exceeded":
        return "context_length"
    if isinstance(error, ModelRefusedParameterError):
        return "refused"
    return None


class TierLadder:
    """Tiers ordered from cheapest to most expensive, and the moves between them.

    ``routed`` says whether the request named the virtual router model (it may move) or a
    concrete model (it gets that model or an error); ``need``, what tool calling it needs
    (:meth:`ChatCompletionRequest.tool_need`), which confines it to tiers that have it.
    """

    def __init__(self, tiers: Sequence[Tier]) -> None:
        self._tiers = {tier.name: tier for tier in tiers}
        self._order = list(self._tiers)

    def capable(self, request: ChatCompletionRequest) -> list[str]:
        """The tiers that can serve ``request``, cheapest first: with the tool calling it needs,
        text completion for a ``raw_prompt``, and vLLM's decoding for its extensions
        (:meth:`~gateway.protocol.ChatCompletionRequest.vllm_decoding`)."""
        need, raw, constrained = request.tool_need(), request.raw_prompt, bool(request.vllm_decoding())
        return [
            name
            for name, tier in self._tiers.items()
            if tier.serves(need) and (tier.completes_text or not raw) and (tier.constrains_decoding or not constrained)
        ]

    def for_text_completion(
        self, request: ChatCompletionRequest, decision: RoutingDecision, *, routed: bool
    ) -> RoutingDecision:
        """Move a ``/v1/completions`` request to a tier that completes text (or refuse it)."""

        def refusal(names: str | None) -> GatewayError:
            if names is None:
                return UnsupportedParameterError("no model here serves the completions API", param="model")
            return InvalidRequestError(
                f"{request.model} is a chat model and is not served at /v1/completions (use "
                f"/v1/chat/completions); models served here: {names}",
                param="model",
                code="model_not_supported",
            )

        capable = [name for name, tier in self._tiers.items() if tier.completes_text]
        return self._move_to(capable, decision, routed=routed, reason="completions", refusal=refusal)

    def for_vllm_decoding(
        self, request: ChatCompletionRequest, decision: RoutingDecision, *, routed: bool
    ) -> RoutingDecision:
        """Move a request with vLLM's decoding extensions (``structured_outputs``, ``bad_words``,
        ...) to a tier that takes them (or refuse it)."""
        param = request.vllm_decoding()[0]
        hint = " (use response_format for a JSON Schema)" if param == "structured_outputs" else ""

        def refusal(names: str | None) -> GatewayError:
            served = "no model here is served by vLLM" if names is None else f"{request.model} is not served by vLLM"
            takers = "" if names is None else f"; models that take it: {names}"
            return UnsupportedParameterError(f"{param} is vLLM's extension, and {served}{hint}{takers}", param=param)

        capable = [name for name, tier in self._tiers.items() if tier.constrains_decoding]
        return self._move_to(capable, decision, routed=routed, reason=param, refusal=refusal)

    def _move_to(
        self,
        capable: list[str],
        decision: RoutingDecision,
        *,
        routed: bool,
        reason: str,
        refusal: Callable[[str | None], GatewayError],
    ) -> RoutingDecision:
        """``decision`` if its tier is ``capable``, else the nearest capable tier for a routed
        request; a request naming a model gets ``refusal`` of the capable models' names, and
        one that no tier can serve ``refusal(None)``."""
        if decision.tier in capable:
            return decision
        if not capable:
            raise refusal(None)
        if not routed:
            raise refusal(", ".join(self._tiers[name].served_model_name for name in capable))
        return self._nearest(capable, decision, reason=reason)

    def for_tools(
        self, request: ChatCompletionRequest, decision: RoutingDecision, *, routed: bool, need: ToolNeed
    ) -> RoutingDecision:
        """Move a request that needs tool calling to a tier that has it (or refuse it)."""
        param = "tools" if request.calls_tools() else "messages"
        what = "calls tools" if request.calls_tools() else "holds tool calls and their results"

        def refusal(names: str | None) -> GatewayError:
            if names is None:
                return UnsupportedParameterError(
                    f"this request {what}, and no model here supports tool calling", param=param
                )
            return UnsupportedParameterError(
                f"this request {what}, and {request.model} does not support tool calling; models that do: {names}",
                param=param,
            )

        capable = [name for name, tier in self._tiers.items() if tier.serves(need)]
        return self._move_to(capable, decision, routed=routed, reason="tools", refusal=refusal)

    def _nearest(self, capable: list[str], decision: RoutingDecision, *, reason: str) -> RoutingDecision:
        """The cheapest ``capable`` tier at or above the scored one, else the largest below it."""
        above = [name for name in capable if self._order.index(name) >= self._order.index(decision.tier)]
        return dataclasses.replace(decision, tier=above[0] if above else capable[-1], reason=reason)

    def check_model_params(self, request: ChatCompletionRequest, decision: RoutingDecision, *, routed: bool) -> None:
        """Refuse a model-specific parameter that no tier here takes, or that the model a request
        names does not take (as OpenAI refuses ``reasoning_effort`` for a model without
        reasoning). A routed request keeps its tier: one whose model does not take the
        parameter answers without it (a routed request leaves the choice of model to the
        gateway, and ``reasoning_effort`` constrains reasoning models only)."""
        for param in request.model_params():
            takers = [tier.served_model_name for tier in self._tiers.values() if param in tier.model_params]
            if not takers:
                raise UnsupportedParameterError(
                    f"Unsupported parameter: '{param}' is not supported by any model here", param=param
                )
            if not routed and param not in self._tiers[decision.tier].model_params:
                raise UnsupportedParameterError(
                    f"Unsupported parameter: '{param}' is not supported with {request.model}; "
                    f"models here that take it: {', '.join(takers)}",
                    param=param,
                )

    def cheapest_for_budget(self, decision: RoutingDecision, *, routed: bool, need: ToolNeed) -> RoutingDecision:
        """The cheapest tier, for a caller whose key has spent its budget (429 where it cannot serve)."""
        cheapest = self._tiers[self._order[0]]
        if not cheapest.serves(need):
            raise RateLimitError(
                f"this key's budget is spent; only {cheapest.served_model_name} is available, "
                "and it does not support tool calling",
                retry_after=3600,
                code="budget_exhausted",
            )
        if decision.tier == cheapest.name:
            return decision
        if not routed:
            raise RateLimitError(
                f"this key's budget is spent; only {cheapest.served_model_name} is available",
                retry_after=3600,
                code="budget_exhausted",
            )
        return dataclasses.replace(decision, tier=cheapest.name, reason="budget")

    def failover_target(
        self, current: str, error: GatewayError, tried: set[str], *, capable: Sequence[str]
    ) -> tuple[str, str] | None:
        """Where a failed request goes next, and why: a larger tier first, then a smaller one,
        among the ``capable`` ones (:meth:`capable`)."""
        why = failover_reason(error)
        if why is None:
            return None
        excluded = tried | (set(self._order) - set(capable))
        index = self._order.index(current)
        for name in self._order[index + 1 :]:
            if name not in excluded:
                return name, f"escalated:{why}"
        if why == "context_length":
            return None  # smaller tiers have no more room
        for name in reversed(self._order[:index]):
            if name not in excluded:
                return name, f"fallback:{why}"
        return None
