"""Chat-completion serving logic: pick the tier, call its engine, shape the response.

Nothing here knows about HTTP frameworks or Ray: engines arrive as
:class:`~gateway.engine.ChatEngine` objects, and results leave as protocol models or
SSE byte strings plus headers, which the thin HTTP layer writes out.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.engine import Completion, CompletionChoice, EngineDelta, GenerationRequest
from gateway.errors import (
    GatewayError,
    InvalidRequestError,
    ModelNotFoundError,
    RateLimitError,
    UnsupportedParameterError,
    UpstreamTimeoutError,
)
from gateway.protocol import (
    ChatCompletionChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChoiceLogprobs,
    ModelCard,
    ModelList,
    ResponseMessage,
    ToolCall,
    Usage,
    check_json_mode_prompt,
    check_tool_use,
    reject_unsupported,
)
from gateway.protocol.model_params import TOKEN_ID_PARAMS
from gateway.routing.live import RoutingControl
from gateway.routing.policy import RoutingDecision, ThresholdPolicy, check_threshold
from gateway.serving.generation import generation_request
from gateway.serving.messages import engine_message
from gateway.serving.observer import FinalUsage, RequestObservation
from gateway.serving.streaming import ClosingStream, SseStream, StreamItem, close_quietly, encode_frames
from gateway.serving.tiers import Tier, TierLadder

__all__ = [
    "HEADER_DROPPED_PARAMS",
    "HEADER_MODEL",
    "HEADER_REASON",
    "HEADER_ROUTER",
    "HEADER_SCORE",
    "HEADER_THRESHOLD",
    "HEADER_TIER",
    "OTHER_MODEL_LABEL",
    "ChatCompletionService",
    "ChatResult",
    "StreamResult",
]

logger = logging.getLogger(__name__)

HEADER_TIER = "x-slm-router-tier"
HEADER_MODEL = "x-slm-router-model"
HEADER_SCORE = "x-slm-router-score"
HEADER_THRESHOLD = "x-slm-router-threshold"
HEADER_REASON = "x-slm-router-reason"
HEADER_ROUTER = "x-slm-router-router"
#: The model-specific parameters (``reasoning_effort``, ``ignore_eos``, ...) a routed request
#: set that the answering tier's model does not take, so it answered without them.
HEADER_DROPPED_PARAMS = "x-slm-router-dropped-params"


@dataclass
class ChatResult:
    """A finished non-stream completion and its response headers."""

    response: ChatCompletionResponse
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class StreamResult:
    """A started stream: its chunks (read once) and the response headers."""

    chunks: AsyncIterator[StreamItem]
    headers: dict[str, str] = field(default_factory=dict)
    #: The chunks' ``id`` (``chatcmpl-...``).
    request_id: str = ""

    @property
    def frames(self) -> ClosingStream[bytes]:
        """The chunks as the chat API's SSE frames (closing them cancels generation)."""
        return encode_frames(self.chunks)


#: The telemetry label of a requested model that no tier serves (or of an unreadable request).
OTHER_MODEL_LABEL = "other"


class ChatCompletionService:
    """Serves ``/v1/chat/completions`` and ``/v1/models`` over a set of tiers."""

    def __init__(
        self,
        tiers: Sequence[Tier],
        *,
        virtual_model_name: str,
        default_tier: str,
        max_tokens_limit: int,
        policy: ThresholdPolicy | None = None,
        max_choices: int = 8,
    ) -> None:
        if not tiers:
            raise ValueError("at least one tier is required")
        self._tiers = {tier.name: tier for tier in tiers}
        self._ladder = TierLadder(tiers)
        self._by_model: dict[str, Tier] = {}
        for tier in tiers:
            self._by_model[tier.name] = tier
            self._by_model[tier.served_model_name] = tier
        self._virtual_model_name = virtual_model_name
        self._default_tier = self._tiers[default_tier]
        self._max_tokens_limit = max_tokens_limit
        self._max_choices = max_choices
        self._created = int(time.time())
        self._policy = policy
        self._control: RoutingControl | None = None

    @property
    def policy(self) -> ThresholdPolicy | None:
        """The routing policy of the virtual model (``None``: the default tier)."""
        return self._policy

    @property
    def control(self) -> RoutingControl | None:
        """Live operator settings shared through Redis (``None``: config only)."""
        return self._control

    def set_control(self, control: RoutingControl | None) -> None:
        """Attach the live routing controls."""
        self._control = control
        if control is not None:
            control.use_router(self._policy.router_name if self._policy is not None else None)

    def set_policy(self, policy: ThresholdPolicy | None) -> None:
        """Swap the routing policy; requests already routed keep their decision."""
        self._policy = policy
        if self._control is not None:
            self._control.use_router(policy.router_name if policy is not None else None)

    @property
    def tiers(self) -> dict[str, Tier]:
        """Tiers by name."""
        return dict(self._tiers)

    def list_models(self) -> ModelList:
        """The virtual router model followed by every concrete tier."""
        cards = [ModelCard(id=self._virtual_model_name, created=self._created, owned_by="slm-router")]
        cards += [
            ModelCard(id=tier.served_model_name, created=self._created, owned_by=tier.owned_by)
            for tier in self._tiers.values()
        ]
        return ModelList(data=cards)

    def resolve_tier(self, model: str) -> Tier:
        """The tier that serves ``model`` (the virtual model goes to the default tier)."""
        if model == self._virtual_model_name:
            return self._default_tier
        tier = self._by_model.get(model)
        if tier is None:
            raise ModelNotFoundError(
                f"The model '{model}' does not exist or you do not have access to it.", param="model"
            )
        return tier

    def _validate(self, request: ChatCompletionRequest) -> list[dict[str, Any]]:
        reject_unsupported(request)
        token_ids = [name for name in ("logit_bias", *sorted(TOKEN_ID_PARAMS)) if getattr(request, name)]
        if token_ids and self.is_routed(request.model):
            raise UnsupportedParameterError(
                f"{token_ids[0]} needs a named model: it holds token ids, which differ between the models "
                "a routed request may go to",
                param=token_ids[0],
            )
        check_tool_use(request.tools, request.tool_choice, request.messages)
        max_tokens = request.requested_max_tokens()
        if max_tokens is not None and max_tokens > self._max_tokens_limit:
            param = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
            raise InvalidRequestError(
                f"{param} is {max_tokens}; this gateway allows at most {self._max_tokens_limit}",
                param=param,
                code="invalid_value",
            )
        if request.choices() > self._max_choices:
            raise InvalidRequestError(
                f"n is {request.choices()}; this gateway allows at most {self._max_choices}",
                param="n",
                code="invalid_value",
            )
        messages = [engine_message(m) for m in request.messages]
        if all(m["role"] in ("assistant", "tool") for m in messages):
            raise InvalidRequestError("messages must include a system or user message", param="messages")
        check_json_mode_prompt(request.response_format, (m["content"] or "" for m in messages))
        return messages

    def _parse_router_model(self, model: str) -> float:
        # RouteLLM's form: "router-<router>-<threshold>", e.g. "router-lexical-0.35".
        prefix = f"{self._virtual_model_name}-"
        router, _, raw = model[len(prefix) :].rpartition("-")
        try:
            threshold = float(raw)
        except ValueError:
            raise InvalidRequestError(
                f"model {model!r}: expected '{prefix}<router>-<threshold>'", param="model", code="invalid_value"
            ) from None
        loaded = self._policy.router_name if self._policy is not None else None
        if loaded is None or router != loaded.split("@", 1)[0]:
            raise ModelNotFoundError(
                f"router {router!r} is not loaded here (loaded: {loaded.split('@', 1)[0] if loaded else 'none'})",
                param="model",
            )
        return check_threshold(threshold, "model")

    def model_label(self, model: str) -> str:
        """``model`` as a metric label: a served name, the virtual model, or :data:`OTHER_MODEL_LABEL`.

        Clients may send any string. Labelling metrics with it would let one client fill the
        metrics SDK's per-instrument series limit (2,000), after which real series land in an
        overflow bucket until restart. ``router-<router>-<threshold>`` counts as the virtual model.
        """
        if model in self._by_model:
            return model
        return self._virtual_model_name if self.is_routed(model) else OTHER_MODEL_LABEL

    def has_tier_choice(self, request: ChatCompletionRequest) -> bool:
        """Whether more than one tier can serve ``request``: where only one can (tool calling
        that only the large model has), no routing decision is made for it."""
        return len(self._ladder.capable(request)) > 1

    def is_routed(self, model: str) -> bool:
        """Whether ``model`` names the virtual router model (plain or with a threshold)."""
        return model == self._virtual_model_name or (
            model.startswith(f"{self._virtual_model_name}-") and model not in self._by_model
        )

    async def route(
        self, request: ChatCompletionRequest, messages: list[dict[str, Any]], threshold_override: float | None = None
    ) -> RoutingDecision:
        """Which tier serves ``request``: named models directly, the virtual model by policy."""
        if not self.is_routed(request.model):
            return RoutingDecision(self.resolve_tier(request.model).name, "model")
        if request.model != self._virtual_model_name:
            threshold_override = self._parse_router_model(request.model)
        if request.router_threshold is not None:
            threshold_override = request.router_threshold
        if self._policy is None:
            return RoutingDecision(self._default_tier.name, "default")
        control = self._control
        if control is None:
            return await self._policy.decide(messages, threshold_override)
        live = control.thresholds(self._policy.thresholds)
        decision = await self._policy.decide(messages, threshold_override, live)
        budget = control.budget
        if budget is None or decision.score is None or threshold_override is not None:
            return decision
        # Where would the request have gone without the budget? A lower tier than that
        # is the budget's doing, and says so; at the cap, the over-budget policy rules.
        order = list(self._tiers)
        unbudgeted = control.thresholds(self._policy.thresholds, with_budget=False) or []
        wanted = order[bisect.bisect_right(unbudgeted, decision.score)]
        if budget.exhausted and wanted == order[-1] and control.settings.over_budget == "reject":
            raise RateLimitError(
                "the hourly budget for the large model is spent; retry next hour or use a smaller model",
                retry_after=max(1.0, budget.seconds_left_in_hour),
                code="budget_exhausted",
            )
        if order.index(decision.tier) < order.index(wanted):
            return dataclasses.replace(decision, reason="budget")
        return decision

    def _headers(
        self, request: ChatCompletionRequest, tier: Tier, model: str, decision: RoutingDecision
    ) -> dict[str, str]:
        headers = {HEADER_TIER: tier.name, HEADER_MODEL: model, HEADER_REASON: decision.reason}
        if dropped := [param for param in request.model_params() if param not in tier.model_params]:
            headers[HEADER_DROPPED_PARAMS] = ",".join(dropped)
        if decision.score is not None:
            headers[HEADER_SCORE] = f"{decision.score:.6f}"
        if decision.threshold is not None:
            headers[HEADER_THRESHOLD] = f"{decision.threshold:.6f}"
        if decision.score is not None and self._policy is not None and self._policy.router_name:
            headers[HEADER_ROUTER] = self._policy.router_name
        return headers

    async def create(
        self,
        request: ChatCompletionRequest,
        *,
        threshold_override: float | None = None,
        observation: RequestObservation | None = None,
        over_budget: bool = False,
    ) -> ChatResult | StreamResult:
        """Serve one chat completion; streams are started (first token received) before returning.

        Requests for the virtual router model fail over: a failing or overloaded tier (or a
        prompt over its context) escalates to the next larger tier, and when no larger
        tier is left the request falls back to a smaller one; the reason header says so.
        Requests that name a concrete model get that model or its error. ``over_budget``
        (the caller's key spent its budget) sends routed requests to the cheapest tier,
        flagged ``budget``, and refuses named models above it with 429.
        """
        messages = self._validate(request)
        if observation is not None:
            with observation.routing_span():
                decision = await self.route(request, messages, threshold_override)
        else:
            decision = await self.route(request, messages, threshold_override)
        routed = self.is_routed(request.model)
        need = request.tool_need()
        if over_budget:
            decision = self._ladder.cheapest_for_budget(decision, routed=routed, need=need)
        if need != "none":
            decision = self._ladder.for_tools(request, decision, routed=routed, need=need)
        if request.raw_prompt:
            decision = self._ladder.for_text_completion(request, decision, routed=routed)
        if request.vllm_decoding():
            decision = self._ladder.for_vllm_decoding(request, decision, routed=routed)
        self._ladder.check_model_params(request, decision, routed=routed)
        if observation is not None:
            # The decision as served: metrics count a key's budget and tool calling as reasons.
            observation.routed(decision)
        tried: set[str] = set()
        while True:
            tier = self._tiers[decision.tier]
            generation = generation_request(request, tier, messages)
            if observation is not None:
                trace_headers = observation.upstream_headers(tier.name, tier.served_model_name)
                generation = dataclasses.replace(generation, trace_headers=trace_headers)
            try:
                if request.stream:
                    return await self._start_stream(request, tier, generation, decision, observation)
                return await self._complete(request, tier, generation, decision, observation)
            except GatewayError as error:
                tried.add(tier.name)
                target = (
                    self._ladder.failover_target(tier.name, error, tried, capable=self._ladder.capable(request))
                    if routed
                    else None
                )
                if target is None:
                    raise
                logger.warning("tier %s failed (%s); %s to %s", tier.name, error.message, target[1], target[0])
                if observation is not None:
                    observation.failed_over(tier.name, target[0], target[1], error)
                decision = dataclasses.replace(decision, tier=target[0], reason=target[1])

    async def _complete(
        self,
        request: ChatCompletionRequest,
        tier: Tier,
        generation: GenerationRequest,
        decision: RoutingDecision,
        observation: RequestObservation | None,
    ) -> ChatResult:
        if observation is None or not tier.billed_when_abandoned:
            completion = await _call(tier, generation)
        else:
            call = asyncio.ensure_future(_call(tier, generation))
            try:
                completion = await asyncio.shield(call)
            except asyncio.CancelledError:
                # The client left; the provider bills the call anyway, so account for it.
                observation.settle_abandoned(call, tier=tier.name, model=tier.served_model_name)
                raise
        model = completion.model or tier.served_model_name
        headers = self._headers(request, tier, model, decision)
        cost = None
        if observation is not None:
            cost = await observation.finish(
                FinalUsage(
                    tier.name,
                    model,
                    completion.prompt_tokens,
                    completion.completion_tokens,
                    stream=False,
                    cached_tokens=completion.cached_tokens,
                )
            )
        if cost is not None:
            headers.update(cost.headers())
        response = ChatCompletionResponse(
            id=generation.request_id,
            created=int(time.time()),
            model=model,
            choices=[_response_choice(choice, generation.logprobs) for choice in completion.choices()],
            usage=Usage.counted(
                completion.prompt_tokens,
                completion.completion_tokens,
                reasoning_tokens=completion.reasoning_tokens,
                cached_tokens=completion.cached_tokens,
                slm_router=cost.as_dict() if cost is not None else None,
            ),
        )
        return ChatResult(response=response, headers=headers)

    async def _start_stream(
        self,
        request: ChatCompletionRequest,
        tier: Tier,
        generation: GenerationRequest,
        decision: RoutingDecision,
        observation: RequestObservation | None,
    ) -> StreamResult:
        deltas = tier.engine.stream(generation).__aiter__()
        # Wait for the first delta before answering, so a failure before the first
        # token is a proper HTTP error (and a transparent failover).
        try:
            async with asyncio.timeout(tier.timeout_s):
                first: EngineDelta | None = await anext(deltas, None)
        except TimeoutError:
            await close_quietly(deltas)
            raise UpstreamTimeoutError(f"{tier.served_model_name} sent nothing within {tier.timeout_s:g}s") from None
        except BaseException:
            await close_quietly(deltas)
            raise
        model = first.model if first is not None and first.model else tier.served_model_name
        stream = SseStream(
            request_id=generation.request_id,
            model=model,
            tier_name=tier.name,
            served_model_name=tier.served_model_name,
            timeout_s=tier.timeout_s,
            include_usage=request.wants_usage_in_stream(),
            observation=observation,
            logprobs=bool(request.logprobs),
            choices=request.choices(),
        )
        return StreamResult(
            chunks=stream.chunks(first, deltas),
            headers=self._headers(request, tier, model, decision),
            request_id=generation.request_id,
        )


async def _call(tier: Tier, generation: GenerationRequest) -> Completion:
    """``tier``'s whole completion, within its timeout."""
    try:
        async with asyncio.timeout(tier.timeout_s):
            return await tier.engine.complete(generation)
    except TimeoutError:
        raise UpstreamTimeoutError(f"{tier.served_model_name} did not answer within {tier.timeout_s:g}s") from None


def _response_choice(choice: CompletionChoice, logprobs: bool) -> ChatCompletionChoice:
    calls = [ToolCall.model_validate(call.to_openai()) for call in choice.tool_calls]
    return ChatCompletionChoice(
        index=choice.index,
        # OpenAI's shape: content is null when the answer is only tool calls.
        message=ResponseMessage(content=choice.text or (None if calls else ""), tool_calls=calls or None),
        finish_reason=choice.finish_reason or ("tool_calls" if calls else "stop"),
        logprobs=ChoiceLogprobs.of(t.to_openai() for t in choice.logprobs) if logprobs else None,
    )
