"""Per-request bookkeeping: cost and ledger, rate-limit settlement, metrics and traces.

The chat service calls a :class:`RequestObservation` at fixed points (routed, failed
over, upstream call, first token, finished, failed) and never talks to the ledger,
OpenTelemetry or Redis itself. Bookkeeping never fails a request: its own errors are
logged, and settlement that must outlive a cancelled stream runs as a detached task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.accounting import CostRecorder, RequestCost
from gateway.engine import Completion
from gateway.errors import GatewayError
from gateway.routing.live import RoutingControl
from gateway.routing.policy import RoutingDecision
from gateway.serving.access import AccessControl, Admission, Caller
from gateway.telemetry import RequestRecord, RequestTrace, Telemetry, UpstreamCall, UpstreamRecord
from gateway.telemetry.semconv import ATTR_OUTPUT_TYPE, OPERATION_CHAT

__all__ = ["CLIENT_CLOSED_REQUEST", "FinalUsage", "RequestObservation", "RequestObserver"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: ``error.type`` of a request whose client left before the answer (see :meth:`RequestObservation.abandon`).
CLIENT_CLOSED_REQUEST = "client_closed_request"


class RequestObserver:
    """Replica-wide factory of :class:`RequestObservation` objects."""

    def __init__(
        self,
        *,
        recorder: CostRecorder | None = None,
        telemetry: Telemetry | None = None,
        access: AccessControl | None = None,
        providers: Mapping[str, str] | None = None,
    ) -> None:
        self.recorder = recorder
        self.telemetry = telemetry
        self.access = access
        self._providers = dict(providers or {})
        #: Live routing controls fed with each routed request's score and usage.
        self.routing_control: RoutingControl | None = None
        # Detached settlements (cancelled streams) must not be garbage-collected mid-flight.
        self._background: set[asyncio.Task[Any]] = set()

    def provider(self, tier: str) -> str:
        """``gen_ai.provider.name`` of a tier."""
        return self._providers.get(tier, "unknown")

    def begin(
        self,
        *,
        request_model: str,
        headers: Mapping[str, str] | None = None,
        caller: Caller | None = None,
        admission: Admission | None = None,
        output_type: str | None = None,
        operation: str = OPERATION_CHAT,
    ) -> RequestObservation:
        """Start observing one request (opens its server span, continuing a client ``traceparent``);
        ``operation`` is its ``gen_ai.operation.name`` (``text_completion`` for ``/v1/completions``)."""
        trace = self.telemetry.start_request(headers or {}) if self.telemetry is not None else None
        if trace is not None and output_type is not None:
            trace.set_attributes({ATTR_OUTPUT_TYPE: output_type})
        return RequestObservation(self, request_model, trace, caller, admission, operation)

    def detach(self, coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``coroutine`` to completion even if the request's task is cancelled."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def drain(self) -> None:
        """Wait for detached settlements (tests, shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)


@dataclass(frozen=True, slots=True)
class FinalUsage:
    """What a finished request used, as its answer reports it: what gets priced and recorded."""

    tier: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    stream: bool
    #: Of ``prompt_tokens``, those the provider served from its prompt cache.
    cached_tokens: int = 0


class RequestObservation:
    """Bookkeeping of one request; every method is safe to call in any order, once finished is final."""

    def __init__(
        self,
        observer: RequestObserver,
        request_model: str,
        trace: RequestTrace | None,
        caller: Caller | None,
        admission: Admission | None,
        operation: str = OPERATION_CHAT,
    ) -> None:
        self._observer = observer
        self._operation = operation
        self._request_model = request_model
        self._trace = trace
        self._caller = caller
        self._admission = admission
        self._started = time.perf_counter()
        self._first_token_s: float | None = None
        self._decision: RoutingDecision | None = None
        self._upstream: UpstreamCall | None = None
        self._upstream_started = 0.0
        self._upstream_tier = ""
        self._upstream_model = ""
        self._finished = False

    @property
    def key_id(self) -> str | None:
        """The caller's key id (never a secret)."""
        return self._caller.key_id if self._caller is not None else None

    def routing_span(self) -> AbstractContextManager[Any]:
        """An INTERNAL child span around the routing decision (a no-op without tracing)."""
        return self._trace.routing() if self._trace is not None else contextlib.nullcontext()

    def routed(self, decision: RoutingDecision) -> None:
        """The routing decision is made."""
        self._decision = decision
        telemetry = self._observer.telemetry
        if telemetry is not None and decision.score is not None:
            telemetry.record_routing(decision.decision_ms / 1000, tier=decision.tier, reason=decision.reason)

    def failed_over(self, from_tier: str, to_tier: str, reason: str, error: GatewayError) -> None:
        """A tier failed and the request moves to another one."""
        self._end_upstream(error)
        telemetry = self._observer.telemetry
        if telemetry is None:
            return
        if reason.startswith("escalated"):
            telemetry.record_escalation(from_tier=from_tier, to_tier=to_tier, reason=reason)
        else:
            telemetry.record_fallback(from_tier=from_tier, to_tier=to_tier, reason=reason)

    def upstream_headers(self, tier: str, model: str) -> dict[str, str]:
        """Open the upstream CLIENT span; returns W3C trace headers to send upstream."""
        self._end_upstream(None)
        self._upstream_started = time.perf_counter()
        self._upstream_tier, self._upstream_model = tier, model
        if self._trace is None:
            return {}
        self._upstream = self._trace.start_upstream(
            tier=tier, provider=self._observer.provider(tier), request_model=model, operation=self._operation
        )
        return dict(self._upstream.headers)

    def _end_upstream(
        self, error: BaseException | str | None, usage: tuple[int, int] = (0, 0), model: str = ""
    ) -> None:
        if self._upstream is None:
            return
        call, self._upstream = self._upstream, None
        if error is None:
            call.set_usage(usage[0], usage[1], model or None)
        call.end(error)
        telemetry = self._observer.telemetry
        if telemetry is not None:
            telemetry.record_upstream(
                UpstreamRecord(
                    tier=self._upstream_tier,
                    provider=self._observer.provider(self._upstream_tier),
                    request_model=self._upstream_model,
                    response_model=model or self._upstream_model,
                    duration_s=time.perf_counter() - self._upstream_started,
                    prompt_tokens=usage[0],
                    completion_tokens=usage[1],
                    error_type=error if isinstance(error, str) or error is None else type(error).__name__,
                    operation=self._operation,
                )
            )

    def first_token(self) -> None:
        """The first content token reached the client (streams)."""
        if self._first_token_s is None:
            self._first_token_s = time.perf_counter() - self._started

    async def finish(self, usage: FinalUsage) -> RequestCost | None:
        """Usage is final: price it, write the ledger, settle rate limits, record metrics, end spans.

        The settlement runs in its own task: a client that leaves while it awaits Redis cancels
        this call, not the settlement.
        """
        settlement = self._detach_settlement(usage)
        return None if settlement is None else await asyncio.shield(settlement)

    def finish_later(self, usage: FinalUsage) -> None:
        """:meth:`finish` without waiting for it (the stream's task is being cancelled)."""
        self._detach_settlement(usage)

    def _detach_settlement(self, usage: FinalUsage) -> asyncio.Task[RequestCost | None] | None:
        if self._finished:
            return None
        self._finished = True
        return self._observer.detach(self._settle(usage))

    def settle_abandoned(self, call: asyncio.Future[Completion], *, tier: str, model: str) -> None:
        """The client left while ``call``, which its provider bills whether or not anyone reads
        the answer (a hosted API's non-streamed completion), was in flight.

        The call runs on in a detached task and its usage is charged when it lands, as a
        request of status 499 (``error.type`` ``client_closed_request``) that has a cost: the
        ledger then matches the provider's bill. A call that fails charges nothing.
        """
        if self._finished:
            return
        self._finished = True

        async def settle() -> None:
            try:
                completion = await call
            except Exception as error:  # noqa: BLE001 - a GatewayError, or a bug below the engine
                self._record_unanswered(error, status_code=499, error_type=CLIENT_CLOSED_REQUEST)
                return
            usage = FinalUsage(
                tier,
                completion.model or model,
                completion.prompt_tokens,
                completion.completion_tokens,
                stream=False,
                cached_tokens=completion.cached_tokens,
            )
            await self._settle(usage, abandoned=True)

        self._observer.detach(settle())

    async def _settle(self, usage: FinalUsage, *, abandoned: bool = False) -> RequestCost | None:
        tier, model, stream = usage.tier, usage.model, usage.stream
        prompt_tokens, completion_tokens = usage.prompt_tokens, usage.completion_tokens
        self._end_upstream(None, (prompt_tokens, completion_tokens), model)
        control = self._observer.routing_control
        if control is not None and self._decision is not None and self._decision.score is not None:
            control.observe(self._decision.score, tier, prompt_tokens, completion_tokens)
        cost: RequestCost | None = None
        recorder = self._observer.recorder
        if recorder is not None:
            try:
                cost = await recorder.settle(
                    tier=tier,
                    model=model,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    cached_tokens=usage.cached_tokens,
                    key_id=self.key_id,
                )
            except Exception:
                logger.exception("pricing a request failed")
        access = self._observer.access
        if access is not None and self._admission is not None:
            try:
                await access.settle(self._admission, prompt_tokens + completion_tokens)
            except Exception:
                logger.exception("settling rate limits failed")
        telemetry = self._observer.telemetry
        if telemetry is not None:
            reason = self._decision.reason if self._decision is not None else "unspecified"
            telemetry.record_request(
                RequestRecord(
                    tier=tier,
                    response_model=model,
                    request_model=self._request_model,
                    provider=self._observer.provider(tier),
                    routing_reason=reason,
                    key_id=self.key_id,
                    duration_s=time.perf_counter() - self._started,
                    time_to_first_token_s=self._first_token_s,
                    stream=stream,
                    cost=cost,
                    error_type=CLIENT_CLOSED_REQUEST if abandoned else None,
                    operation=self._operation,
                )
            )
        if self._trace is not None:
            self._trace.set_route(tier=tier, model=model, reason=self._decision.reason if self._decision else None)
            if cost is not None:
                self._trace.set_attributes(
                    {"slm_router.cost_usd": cost.cost_usd, "slm_router.savings_usd": cost.savings_usd}
                )
            self._trace.end(status_code=499 if abandoned else 200, error=CLIENT_CLOSED_REQUEST if abandoned else None)
        return cost

    def fail(self, error: GatewayError) -> None:
        """The request ends with an error response (nothing answered, nothing to charge)."""
        self._end_unanswered(error, status_code=error.status_code, error_type=error.code or type(error).__name__)

    def abandon(self) -> None:
        """The client left before the answer (its task was cancelled).

        Counted as a failed request with status 499 (nginx's "client closed request"; no client
        sees it) and ``error.type`` ``client_closed_request``, so that operators see hang-ups.
        Nothing is charged: no usage came back. A stream's client that leaves after the first
        byte is not this: the stream settles what was generated.
        """
        self._end_unanswered(CLIENT_CLOSED_REQUEST, status_code=499, error_type=CLIENT_CLOSED_REQUEST)

    def _end_unanswered(self, error: BaseException | str, *, status_code: int, error_type: str) -> None:
        if self._finished:
            return
        self._finished = True
        self._record_unanswered(error, status_code=status_code, error_type=error_type)

    def _record_unanswered(self, error: BaseException | str, *, status_code: int, error_type: str) -> None:
        self._end_upstream(error)
        telemetry = self._observer.telemetry
        if telemetry is not None:
            tier = self._decision.tier if self._decision is not None else "none"
            telemetry.record_request(
                RequestRecord(
                    tier=tier,
                    response_model=self._request_model,
                    request_model=self._request_model,
                    provider=self._observer.provider(tier),
                    routing_reason=self._decision.reason if self._decision else "unspecified",
                    key_id=self.key_id,
                    duration_s=time.perf_counter() - self._started,
                    error_type=error_type,
                    operation=self._operation,
                )
            )
        if self._trace is not None:
            self._trace.end(status_code=status_code, error=error)
