"""Builds one replica's serving objects from the config: state, accounting, telemetry, endpoints.

The ingress deployment and the in-process integration tests both call
:func:`build_replica_services`, so what the tests exercise is what production runs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace import SpanProcessor

from gateway.accounting import CostCalculator, CostRecorder, Ledger, LedgerLayout
from gateway.config import GatewayConfig, LiteLLMTierConfig
from gateway.routing import RoutingPreference
from gateway.routing.live import RoutingControl
from gateway.serving.access import AccessControl
from gateway.serving.admin import AdminService
from gateway.serving.background_responses import BackgroundResponses
from gateway.serving.background_runs import BackgroundRuns
from gateway.serving.chat import ChatCompletionService
from gateway.serving.completions_endpoint import CompletionsEndpoint
from gateway.serving.conversations_endpoint import ConversationHistory, ConversationsEndpoint
from gateway.serving.endpoint import ChatEndpoint
from gateway.serving.health import HealthCheck, HealthService
from gateway.serving.key_budgets import KeySpend
from gateway.serving.observer import RequestObserver
from gateway.serving.responses_endpoint import ResponsesEndpoint
from gateway.serving.tiers import Tier
from gateway.state import StateStore
from gateway.telemetry import CONTENT_TYPE, Telemetry, provider_name, render_metrics

__all__ = ["ReplicaServices", "build_replica_services"]

logger = logging.getLogger(__name__)


@dataclass
class ReplicaServices:
    """Everything one replica serves with, and what must be closed at shutdown."""

    chat: ChatCompletionService
    endpoint: ChatEndpoint
    responses: ResponsesEndpoint
    conversations: ConversationsEndpoint
    completions: CompletionsEndpoint
    health: HealthService
    access: AccessControl
    admin: AdminService
    observer: RequestObserver
    store: StateStore | None
    ledger: Ledger | None
    telemetry: Telemetry | None

    async def render_metrics(self) -> tuple[bytes, str]:
        """Prometheus exposition: cluster-wide ledger totals plus this replica's own metrics."""
        return await render_metrics(self.ledger, self.telemetry), CONTENT_TYPE

    async def close(self) -> None:
        """Stop background responses, drain bookkeeping, flush the ledger buffer and telemetry, close Redis."""
        await self.responses.close()
        await self.observer.drain()
        if self.chat.control is not None:
            await self.chat.control.close()
        if self.store is not None:
            await self.store.close()
        if self.telemetry is not None:
            self.telemetry.shutdown()
        for tier in self.chat.tiers.values():
            await tier.engine.shutdown()


async def build_replica_services(
    config: GatewayConfig,
    tiers: Sequence[Tier],
    *,
    hard_checks: Mapping[str, HealthCheck] | None = None,
    instance_id: str | None = None,
    metric_readers: Sequence[MetricReader] = (),
    span_processors: Sequence[SpanProcessor] = (),
    environ: Mapping[str, str] | None = None,
    account: bool = True,
    health_info: Callable[[], dict[str, Any]] | None = None,
) -> ReplicaServices:
    """Create the replica's services. ``account=False`` skips cost and telemetry (the stand-in)."""
    env = os.environ if environ is None else environ
    store: StateStore | None = None
    if config.redis.url:
        store = StateStore.from_url(config.redis.url, config.state, environ=env)
        if not await store.start():
            logger.warning("redis is not reachable at start-up; serving degraded until it is")
    ledger: Ledger | None = None
    recorder: CostRecorder | None = None
    telemetry: Telemetry | None = None
    calculator: CostCalculator | None = None
    if account and config.accounting.enabled:
        calculator = CostCalculator.from_config(config.accounting, config.tiers)
        if store is not None:
            layout = LedgerLayout.from_config(config.accounting.ledger)
            store.ledger.set_ttl_for(layout.ttl_for)
            # The buffered writer keeps increments while Redis is down and replays them.
            ledger = Ledger.from_config(store.client, config.accounting.ledger, writer=store.ledger)
        recorder = CostRecorder(calculator, ledger)
    if account and config.telemetry.enabled:
        large = (
            {calculator.prices.baseline_name} if calculator is not None and calculator.prices.baseline_name else set()
        )
        telemetry = Telemetry(
            config.telemetry,
            large_tiers=large,
            instance_id=instance_id,
            metric_readers=metric_readers,
            span_processors=span_processors,
            environ=env,
        )
    access = AccessControl(store, env)
    providers: dict[str, str] = {}
    for name, tier_config in config.tiers.items():
        try:
            providers[name] = provider_name(tier_config)
        except Exception:  # noqa: BLE001 - a label, never worth failing start-up for
            providers[name] = "openai" if isinstance(tier_config, LiteLLMTierConfig) else "vllm"
    observer = RequestObserver(recorder=recorder, telemetry=telemetry, access=access, providers=providers)
    chat = ChatCompletionService(
        tiers,
        virtual_model_name=config.routing.virtual_model_name,
        default_tier=config.routing.default_tier,
        max_tokens_limit=config.server.max_tokens_limit,
        max_choices=config.server.max_choices,
    )
    control: RoutingControl | None = None
    if store is not None and account:
        control = RoutingControl(
            store.client, prefix=config.state.prefix, tiers=list(config.tiers), calculator=calculator, ledger=ledger
        )
        await control.start()
        chat.set_control(control)
        observer.routing_control = control
    cache = store.cache if store is not None else None
    key_spend = KeySpend(ledger) if ledger is not None else None
    capture = store.capture if store is not None and store.capture.enabled else None
    endpoint = ChatEndpoint(
        chat,
        access,
        observer,
        cache,
        RoutingPreference.by_tenant(config.routing.tenant_thresholds, config.routing.tenant_large_shares),
        key_spend,
        capture,
    )
    soft: dict[str, HealthCheck] = {"redis": store.health.check} if store is not None else {}

    def info() -> dict[str, Any]:
        extra = dict(health_info()) if health_info is not None else {}
        if store is not None:
            extra["state"] = store.health.snapshot()
        return extra

    health = HealthService(dict(hard_checks or {}), soft_checks=soft, info=info)
    history = ConversationHistory(store.conversations if store is not None else None)
    return ReplicaServices(
        chat=chat,
        endpoint=endpoint,
        responses=ResponsesEndpoint(
            endpoint,
            access,
            store.responses if store is not None else None,
            _background_responses(endpoint, store, history) if store is not None else None,
            history,
        ),
        conversations=ConversationsEndpoint(access, store.conversations if store is not None else None),
        completions=CompletionsEndpoint(endpoint),
        health=health,
        access=access,
        admin=AdminService(store, ledger, chat),
        observer=observer,
        store=store,
        ledger=ledger,
        telemetry=telemetry,
    )


def _background_responses(
    endpoint: ChatEndpoint, store: StateStore, history: ConversationHistory
) -> BackgroundResponses:
    settings = store.config.responses
    runs = BackgroundRuns(store.responses, poll_s=settings.background_poll_s, lease_s=settings.background_lease_s)
    return BackgroundResponses(endpoint, store.responses, runs, store.response_events, history)
