"""Everything ``POST /v1/chat/completions`` does, free of any HTTP framework.

Order matters and follows OpenAI's API: authenticate, parse, admit under rate limits,
answer from the response cache when asked, else route and generate; bookkeeping
(cost, ledger, metrics, traces) is observed throughout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.errors import GatewayError, InvalidRequestError, RateLimitError
from gateway.protocol import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    check_tool_use,
    reject_unsupported,
)
from gateway.protocol.legacy_functions import (
    answers_in_legacy_shape,
    as_tool_calling,
    legacy_chunk,
    legacy_response,
    uses_legacy_functions,
)
from gateway.protocol.parsing import parse_body
from gateway.routing import RoutingPreference
from gateway.serving.access import AccessControl, Admission, Caller
from gateway.serving.chat import OTHER_MODEL_LABEL, ChatCompletionService, ChatResult, StreamResult
from gateway.serving.key_budgets import KeySpend
from gateway.serving.observer import RequestObserver
from gateway.serving.streaming import ClosingStream, StreamItem
from gateway.state import ConversationCapture, ResponseCache
from gateway.telemetry.semconv import OPERATION_CHAT

__all__ = [
    "CACHE_HEADER",
    "TENANT_HEADER",
    "THRESHOLD_HEADER",
    "AdmittedRequest",
    "ChatEndpoint",
    "RequestReader",
    "parse_threshold_header",
]

#: Request header with a per-request routing threshold for the virtual router model.
THRESHOLD_HEADER = "x-slm-router-threshold"
#: Request header opting one non-stream request into the response cache; responses say hit or miss.
CACHE_HEADER = "x-slm-router-cache"
#: Request header naming the tenant when authentication is off (with auth, the key's tenant wins).
TENANT_HEADER = "x-slm-router-tenant"
#: Upper bound of generated tokens assumed by the rate limiter before a response exists.
_ESTIMATE_MAX_TOKENS = 256


#: Reads a body as the chat request to serve, for the authenticated caller (the Responses
#: API's reader loads the caller's stored conversation). The default parses chat JSON.
RequestReader = Callable[[bytes, Caller], Awaitable[ChatCompletionRequest]]


def parse_threshold_header(headers: Mapping[str, str]) -> float | None:
    """The per-request threshold header as a number in [0, 1] (400 otherwise)."""
    raw = headers.get(THRESHOLD_HEADER)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidRequestError(f"header {THRESHOLD_HEADER} must be a number", param=THRESHOLD_HEADER) from None
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise InvalidRequestError(f"header {THRESHOLD_HEADER} must be within [0, 1]", param=THRESHOLD_HEADER)
    return value


@dataclass(frozen=True)
class AdmittedRequest:
    """A request past authentication, its checks, rate limits and budget (:meth:`ChatEndpoint.admit`)."""

    caller: Caller
    request: ChatCompletionRequest
    #: The request as a plain dict (the cache key), when the cache or a rate limit needs it.
    request_dict: dict[str, Any]
    threshold: float | None
    use_cache: bool
    legacy_answer: bool
    admission: Admission
    over_budget: bool
    operation: str


class ChatEndpoint:
    """The chat-completions endpoint's logic."""

    def __init__(
        self,
        chat: ChatCompletionService,
        access: AccessControl,
        observer: RequestObserver,
        cache: ResponseCache | None = None,
        tenant_preferences: Mapping[str, RoutingPreference] | None = None,
        key_spend: KeySpend | None = None,
        capture: ConversationCapture | None = None,
    ) -> None:
        self._tenant_preferences = dict(tenant_preferences or {})
        self._capture = capture
        self._key_spend = key_spend
        self._chat = chat
        self._access = access
        self._observer = observer
        self._cache = cache

    def refused(
        self,
        error: GatewayError,
        headers: Mapping[str, str],
        caller: Caller | None,
        model: str | None,
        *,
        output_type: str | None = None,
        operation: str = OPERATION_CHAT,
    ) -> None:
        """Record a request refused before any work: still a failed request in the metrics and
        traces (``error.type`` says why), so operators see bad keys and bodies, unsupported asks
        and 429s, whichever API they came through."""
        label = self._chat.model_label(model) if model is not None else OTHER_MODEL_LABEL
        self._observer.begin(
            request_model=label, headers=headers, caller=caller, output_type=output_type, operation=operation
        ).fail(error)

    def check_model(self, model: str) -> None:
        """Raise the 404 for a model no tier serves (the virtual router model passes)."""
        if not self._chat.is_routed(model):
            self._chat.resolve_tier(model)

    def _wants_cache(self, request: ChatCompletionRequest, headers: Mapping[str, str]) -> bool:
        if self._cache is None or request.stream:
            return False
        opt = headers.get(CACHE_HEADER, "").strip().lower()
        if opt in ("false", "0", "no"):
            return False
        return self._cache.enabled or opt in ("true", "1", "yes")

    async def handle(
        self,
        body: bytes,
        headers: Mapping[str, str],
        *,
        read: RequestReader | None = None,
        operation: str = OPERATION_CHAT,
    ) -> ChatResult | StreamResult:
        """Serve one request; every failure is a :class:`GatewayError`.

        ``read`` turns the body into the chat request (default: chat-completions JSON);
        other APIs served by the same pipeline pass their own, and their ``operation`` for
        telemetry (``gen_ai.operation.name``).
        """
        return await self.serve(await self.admit(body, headers, read=read, operation=operation), headers)

    async def admit(
        self,
        body: bytes,
        headers: Mapping[str, str],
        *,
        read: RequestReader | None = None,
        operation: str = OPERATION_CHAT,
    ) -> AdmittedRequest:
        """Authenticate, read and check a request and take it from the caller's rate limits and
        budget, without serving it yet (:meth:`serve`): a background response is admitted, so
        refused with its 429, before it is answered ``queued``. A refusal is counted here."""
        caller: Caller | None = None
        request: ChatCompletionRequest | None = None
        try:
            caller = await self._access.authenticate(headers.get("authorization"), headers.get(TENANT_HEADER))
            if read is None:
                request = parse_body(body, ChatCompletionRequest)
            else:
                request = await read(body, caller)
            legacy_answer = answers_in_legacy_shape(request)
            if uses_legacy_functions(request):
                request = as_tool_calling(request)
            # Before the cache: a cached answer must not reach a request that is refused uncached.
            reject_unsupported(request)
            check_tool_use(request.tools, request.tool_choice, request.messages)
            threshold = parse_threshold_header(headers)
            if threshold is None:
                threshold = self._default_threshold(caller)
            use_cache = self._wants_cache(request, headers)
            # The request as a plain dict feeds rate-limit estimates and the cache key; skip
            # building it on the common path that needs neither.
            needs_dict = use_cache or caller.record is not None
            request_dict: dict[str, Any] = request.model_dump(mode="json", exclude_none=True) if needs_dict else {}
            if use_cache:
                # A completions prompt is continued without the chat template: another answer than
                # the chat request with the same one message (and a body cannot claim to be one).
                request_dict["raw_prompt"] = request.raw_prompt
            if use_cache and threshold is not None and request.router_threshold is None:
                # A header's or the key's threshold picks the tier as the body field would, so the
                # cache must tell them apart (the body field wins, as in routing).
                request_dict["router_threshold"] = threshold
            admission = await self._access.admit(caller, request_dict, _ESTIMATE_MAX_TOKENS)
            over_budget = await self._over_budget(caller)
        except GatewayError as error:
            self.refused(
                error,
                headers,
                caller,
                request.model if request is not None else None,
                output_type=request.output_type() if request is not None else None,
                operation=operation,
            )
            raise
        return AdmittedRequest(
            caller, request, request_dict, threshold, use_cache, legacy_answer, admission, over_budget, operation
        )

    async def serve(self, admitted: AdmittedRequest, headers: Mapping[str, str]) -> ChatResult | StreamResult:
        """Serve an admitted request: the cache, routing, the tiers, accounting and telemetry."""
        request, caller, request_dict = admitted.request, admitted.caller, admitted.request_dict
        use_cache, admission = admitted.use_cache, admitted.admission
        await self._maybe_capture(request, caller)
        if use_cache and self._cache is not None:
            hit = await self._cache.get(request_dict, scope=caller.tenant)
            if hit is not None:
                return _shaped(self._cached(hit, admission.headers()), legacy=admitted.legacy_answer)
        observation = self._observer.begin(
            request_model=self._chat.model_label(request.model),
            headers=headers,
            caller=caller,
            admission=admission,
            output_type=request.output_type(),
            operation=admitted.operation,
        )
        try:
            result = await self._chat.create(
                request,
                threshold_override=admitted.threshold,
                observation=observation,
                over_budget=admitted.over_budget,
            )
        except GatewayError as error:
            observation.fail(error)
            raise
        except asyncio.CancelledError:
            observation.abandon()
            raise
        result.headers.update(admission.headers())
        if use_cache and self._cache is not None and isinstance(result, ChatResult):
            stored = result.response.model_dump(mode="json")
            stored["usage"].pop("slm_router", None)
            await self._cache.put(request_dict, stored, scope=caller.tenant)
            result.headers[CACHE_HEADER] = "miss"
        return _shaped(result, legacy=admitted.legacy_answer)

    async def _maybe_capture(self, request: ChatCompletionRequest, caller: Caller) -> None:
        # Admitted requests for a served (or the routed) model, cache hits included: the
        # sample is of the traffic the router decides on, not of bad keys, bodies or names,
        # nor of requests only one tier can serve (labelling would ask a tier that refuses it),
        # nor of completions prompts (labelling asks in chat form: another task).
        # Before generation, so that no open stream waits on this write.
        if self._capture is None or request.raw_prompt or not self._capture.sampled(caller.tenant, request.store):
            return
        if self._chat.model_label(request.model) != OTHER_MODEL_LABEL and self._chat.has_tier_choice(request):
            messages = [m.model_dump(mode="json", exclude_none=True) for m in request.messages]
            # Labelling replays the tools: an agent's turn answered without them is another task.
            await self._capture.keep(messages, request.offered_tools())

    async def _over_budget(self, caller: Caller) -> bool:
        """Whether the caller's key has spent its dollar budget (429 when the policy says reject)."""
        record = caller.record
        if record is None or record.budget_usd is None or self._key_spend is None:
            return False
        spent = await self._key_spend.spent_usd(record.key_id)
        if spent < record.budget_usd:
            return False
        control = self._chat.control
        if control is not None and control.settings.over_budget == "reject":
            raise RateLimitError(
                f"this key's budget of ${record.budget_usd:g} is spent", retry_after=3600, code="budget_exhausted"
            )
        return True

    def _default_threshold(self, caller: Caller) -> float | None:
        # A key's own routing preference, else its tenant's, else none (the policy's). A share
        # the loaded router cannot turn into a threshold (no calibration) passes to the next.
        policy = self._chat.policy
        if caller.record is not None and caller.record.routing_defaults:
            threshold = RoutingPreference.stored(caller.record.routing_defaults).threshold_with(policy)
            if threshold is not None:
                return threshold
        tenant = self._tenant_preferences.get(caller.tenant)
        return tenant.threshold_with(policy) if tenant is not None else None

    @staticmethod
    def _cached(hit: dict[str, Any], extra_headers: dict[str, str]) -> ChatResult:
        # A hit is a new response to the client (fresh id) that cost nothing upstream.
        hit = {**hit, "id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time())}
        usage = dict(hit.get("usage") or {})
        usage["slm_router"] = {"cost_usd": 0.0, "baseline_usd": 0.0, "savings_usd": 0.0}
        hit["usage"] = usage
        response = ChatCompletionResponse.model_validate(hit)
        headers = {CACHE_HEADER: "hit", "x-slm-router-model": response.model, **extra_headers}
        headers["x-slm-router-cost-usd"] = "0"
        return ChatResult(response=response, headers=headers)


def _shaped(result: ChatResult | StreamResult, *, legacy: bool) -> ChatResult | StreamResult:
    # The cache and the ledger keep the tool-calling form; only the client sees the legacy one.
    if not legacy:
        return result
    if isinstance(result, ChatResult):
        return ChatResult(response=legacy_response(result.response), headers=result.headers)
    return dataclasses.replace(result, chunks=ClosingStream.over(_legacy_chunks(result.chunks), result.chunks))


async def _legacy_chunks(chunks: AsyncIterator[StreamItem]) -> AsyncGenerator[StreamItem]:
    async for item in chunks:
        yield legacy_chunk(item) if isinstance(item, ChatCompletionChunk) else item
