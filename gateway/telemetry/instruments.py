"""The gateway's metric instruments and what one request records on them.

These are *per-replica* figures: each replica counts what it served. Summed in a
backend fed over OTLP (every replica has its own ``service.instance.id``), they give
cluster totals; the exact, durable totals of cost and tokens come from the Redis
ledger (see :mod:`gateway.telemetry.prometheus`).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from gateway.accounting.cost import RequestCost
from gateway.telemetry import semconv as sc

__all__ = ["GatewayMetrics", "RequestRecord", "UpstreamRecord"]


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One finished gateway request (successful or not)."""

    #: Tier that answered (or was last tried).
    tier: str
    #: Concrete model reported to the client (``gen_ai.response.model``).
    response_model: str
    #: Model the client asked for, e.g. the virtual ``router`` (``gen_ai.request.model``).
    request_model: str
    #: ``gen_ai.provider.name`` of the tier, e.g. ``vllm`` or ``openai``.
    provider: str
    #: Why the router chose the tier (``default``, ``classifier``, ``explicit``, ...).
    routing_reason: str = "unspecified"
    #: Non-secret tenant or key id.
    key_id: str | None = None
    #: Wall time from request received to last byte sent.
    duration_s: float = 0.0
    #: Streams only: time from request received to the first content token sent.
    time_to_first_token_s: float | None = None
    stream: bool = False
    #: ``None`` when nothing was billed (e.g. a request that failed before any upstream call).
    cost: RequestCost | None = None
    #: Exception class name or error code when the request failed.
    error_type: str | None = None
    #: ``gen_ai.operation.name``: ``chat``, or ``text_completion`` for ``/v1/completions``.
    operation: str = sc.OPERATION_CHAT


@dataclass(frozen=True, slots=True)
class UpstreamRecord:
    """One call to a model upstream (a request may make several: escalation, fallback)."""

    tier: str
    provider: str
    request_model: str
    response_model: str
    duration_s: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error_type: str | None = None
    operation: str = sc.OPERATION_CHAT


class _ShareWindow:
    """Share of "large" answers among the last N requests of this replica.

    A window rather than a lifetime ratio, so a routing change shows within minutes;
    guarded by a lock because the SDK calls observable callbacks from its own thread.
    """

    def __init__(self, size: int) -> None:
        self._window: deque[bool] = deque(maxlen=size)
        self._large = 0
        self._lock = threading.Lock()

    def add(self, is_large: bool) -> None:
        """Record one answered request."""
        with self._lock:
            if len(self._window) == self._window.maxlen and self._window[0]:
                self._large -= 1
            self._window.append(is_large)
            self._large += is_large

    def share(self) -> float | None:
        """Large answers / answers in the window (``None`` before the first)."""
        with self._lock:
            return self._large / len(self._window) if self._window else None


class GatewayMetrics:
    """Creates the instruments once and records requests, upstream calls and routing on them."""

    def __init__(
        self,
        meter: Meter,
        *,
        large_tiers: Collection[str] = (),
        key_id_in_metrics: bool = True,
        large_share_window: int = 1000,
    ) -> None:
        self._large_tiers = frozenset(large_tiers)
        self._key_id_in_metrics = key_id_in_metrics
        self._share = _ShareWindow(large_share_window)
        self.requests = meter.create_counter(sc.METRIC_REQUESTS, "{request}", "Chat requests served")
        self.prompt_tokens = meter.create_counter(sc.METRIC_PROMPT_TOKENS, "{token}", "Prompt tokens billed")
        self.completion_tokens = meter.create_counter(
            sc.METRIC_COMPLETION_TOKENS, "{token}", "Completion tokens billed"
        )
        self.cost = meter.create_counter(sc.METRIC_COST, "{USD}", "What requests cost, in USD")
        self.baseline_cost = meter.create_counter(
            sc.METRIC_BASELINE_COST, "{USD}", "What the baseline model would have charged, in USD"
        )
        self.savings = meter.create_up_down_counter(sc.METRIC_SAVINGS, "{USD}", "Baseline cost minus cost, in USD")
        self.token_usage = meter.create_histogram(
            sc.METRIC_TOKEN_USAGE,
            "{token}",
            "Tokens per upstream call",
            explicit_bucket_boundaries_advisory=sc.BUCKETS_TOKENS,
        )
        self.client_duration = meter.create_histogram(
            sc.METRIC_CLIENT_DURATION,
            "s",
            "Duration of upstream model calls",
            explicit_bucket_boundaries_advisory=sc.BUCKETS_DURATION_S,
        )
        self.server_duration = meter.create_histogram(
            sc.METRIC_SERVER_DURATION,
            "s",
            "Duration of gateway chat requests",
            explicit_bucket_boundaries_advisory=sc.BUCKETS_DURATION_S,
        )
        self.time_to_first_token = meter.create_histogram(
            sc.METRIC_TTFT,
            "s",
            "Time to the first streamed token",
            explicit_bucket_boundaries_advisory=sc.BUCKETS_TTFT_S,
        )
        self.decision_duration = meter.create_histogram(
            sc.METRIC_DECISION_DURATION,
            "s",
            "Duration of the routing decision",
            explicit_bucket_boundaries_advisory=sc.BUCKETS_DECISION_S,
        )
        self.escalations = meter.create_counter(
            sc.METRIC_ESCALATIONS, "{escalation}", "Requests re-sent to a larger tier"
        )
        self.fallbacks = meter.create_counter(
            sc.METRIC_FALLBACKS, "{fallback}", "Requests moved to another tier on failure"
        )
        meter.create_observable_gauge(
            sc.METRIC_LARGE_SHARE, [self._observe_share], "1", "Share of recent requests answered by a large tier"
        )

    def _observe_share(self, options: CallbackOptions) -> Iterable[Observation]:
        del options
        share = self._share.share()
        return [] if share is None else [Observation(share)]

    def _request_attributes(self, record: RequestRecord) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            sc.ATTR_OPERATION: record.operation,
            sc.ATTR_PROVIDER: record.provider,
            sc.ATTR_REQUEST_MODEL: record.request_model,
            sc.ATTR_RESPONSE_MODEL: record.response_model,
            sc.ATTR_TIER: record.tier,
            sc.ATTR_ROUTING_REASON: record.routing_reason,
            sc.ATTR_STREAM: record.stream,
        }
        if self._key_id_in_metrics and record.key_id:
            attributes[sc.ATTR_KEY_ID] = record.key_id
        if record.error_type:
            attributes[sc.ATTR_ERROR_TYPE] = record.error_type
        return attributes

    def record_request(self, record: RequestRecord) -> None:
        """Count one finished request: requests, tokens, money, latency, large share."""
        attributes = self._request_attributes(record)
        self.requests.add(1, attributes)
        self.server_duration.record(record.duration_s, attributes)
        if record.time_to_first_token_s is not None:
            self.time_to_first_token.record(record.time_to_first_token_s, attributes)
        if record.cost is not None:
            cost = record.cost
            self.prompt_tokens.add(cost.prompt_tokens, attributes)
            self.completion_tokens.add(cost.completion_tokens, attributes)
            self.cost.add(cost.cost_usd, attributes)
            self.baseline_cost.add(cost.baseline_usd, attributes)
            self.savings.add(cost.savings_usd, attributes)
        if record.error_type is None:
            self._share.add(record.tier in self._large_tiers)

    def record_upstream(self, record: UpstreamRecord) -> None:
        """One upstream call: GenAI client duration and token usage histograms."""
        attributes: dict[str, Any] = {
            sc.ATTR_OPERATION: record.operation,
            sc.ATTR_PROVIDER: record.provider,
            sc.ATTR_REQUEST_MODEL: record.request_model,
            sc.ATTR_RESPONSE_MODEL: record.response_model,
            sc.ATTR_TIER: record.tier,
        }
        if record.error_type:
            attributes[sc.ATTR_ERROR_TYPE] = record.error_type
        self.client_duration.record(record.duration_s, attributes)
        if record.error_type is None:
            self.token_usage.record(record.prompt_tokens, {**attributes, sc.ATTR_TOKEN_TYPE: "input"})
            self.token_usage.record(record.completion_tokens, {**attributes, sc.ATTR_TOKEN_TYPE: "output"})

    def record_routing(self, duration_s: float, *, tier: str, reason: str) -> None:
        """How long the router took to pick ``tier``, and why."""
        self.decision_duration.record(duration_s, {sc.ATTR_TIER: tier, sc.ATTR_ROUTING_REASON: reason})

    def record_escalation(self, *, from_tier: str, to_tier: str, reason: str) -> None:
        """A request re-sent to a larger tier (e.g. the small answer was judged too weak)."""
        self.escalations.add(
            1, {sc.ATTR_FROM_TIER: from_tier, sc.ATTR_TO_TIER: to_tier, sc.ATTR_ROUTING_REASON: reason}
        )

    def record_fallback(self, *, from_tier: str, to_tier: str, reason: str) -> None:
        """A request moved to another tier because the first one failed (``reason``: error type)."""
        self.fallbacks.add(1, {sc.ATTR_FROM_TIER: from_tier, sc.ATTR_TO_TIER: to_tier, sc.ATTR_ROUTING_REASON: reason})
