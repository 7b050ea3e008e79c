"""The Prometheus ``/metrics`` exposition: cluster-wide ledger totals (+ optional replica metrics).

Behind Ray Serve, a scrape of ``/metrics`` lands on whichever ingress replica the
proxy picks, so an in-process counter would show one replica's share, and a different
one each scrape. The money and token counters here are therefore read from the Redis
ledger at scrape time: every replica writes there, so any replica answers with the
same exact, durable, cluster-wide totals.

Cluster-wide (from Redis, every replica reports the same):
  ``slm_router_ledger_requests_total``, ``slm_router_ledger_prompt_tokens_total``,
  ``slm_router_ledger_completion_tokens_total``, ``slm_router_ledger_cost_usd_total``,
  ``slm_router_ledger_baseline_cost_usd_total`` (counters), ``slm_router_ledger_savings_usd``
  (gauge: it can go down) with labels ``tier``, ``model``, ``key_id``; and
  ``slm_router_ledger_up`` (1 when Redis answered this scrape).

Per replica (only with ``prometheus_replica_metrics``; labelled ``service_instance_id``):
  the OpenTelemetry instruments, e.g. ``gen_ai_server_request_duration_seconds``. Use
  OTLP for these when there is more than one ingress replica.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.accounting.cost import nanos_to_usd
from gateway.accounting.layout import SeriesKey
from gateway.accounting.ledger import Ledger
from gateway.accounting.summary import Counts, SeriesCounts

if TYPE_CHECKING:
    from gateway.telemetry.provider import Telemetry

__all__ = ["CONTENT_TYPE", "LEDGER_METRICS", "LedgerCollector", "render_metrics"]

logger = logging.getLogger(__name__)

#: ``Content-Type`` of the exposition (Prometheus text format 0.0.4).
CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Family names (without ``_total``) exported from the ledger.
LEDGER_METRICS = (
    "slm_router_ledger_requests",
    "slm_router_ledger_prompt_tokens",
    "slm_router_ledger_completion_tokens",
    "slm_router_ledger_cost_usd",
    "slm_router_ledger_baseline_cost_usd",
    "slm_router_ledger_savings_usd",
    "slm_router_ledger_up",
)


class LedgerCollector(Collector):
    """A prometheus_client collector over a snapshot of the ledger's all-time totals.

    The snapshot is taken asynchronously just before the scrape is rendered (see
    :func:`render_metrics`), because a collector's ``collect`` is synchronous and must
    not block the event loop on Redis. ``series=None`` means Redis could not be read:
    only ``slm_router_ledger_up 0`` is exported, never zeros that would look like a
    counter reset.
    """

    def __init__(self, series: Sequence[SeriesCounts] | None, *, include_key_id: bool = True) -> None:
        self._series = series
        self._include_key_id = include_key_id

    def _grouped(self) -> dict[tuple[str, ...], Counts]:
        grouped: dict[tuple[str, ...], Counts] = {}
        for row in self._series or ():
            s: SeriesKey = row.series
            labels = (s.tier, s.model, s.key_id) if self._include_key_id else (s.tier, s.model)
            grouped[labels] = grouped.get(labels, Counts()) + row.counts
        return grouped

    def collect(self) -> Iterable[Metric]:
        """The ledger families, or only ``slm_router_ledger_up 0``."""
        up = GaugeMetricFamily("slm_router_ledger_up", "1 when the Redis ledger answered this scrape")
        up.add_metric([], 0.0 if self._series is None else 1.0)
        if self._series is None:
            return [up]
        names = ["tier", "model", "key_id"] if self._include_key_id else ["tier", "model"]
        requests = CounterMetricFamily("slm_router_ledger_requests", "Requests served, all replicas", labels=names)
        prompt = CounterMetricFamily("slm_router_ledger_prompt_tokens", "Prompt tokens billed", labels=names)
        completion = CounterMetricFamily(
            "slm_router_ledger_completion_tokens", "Completion tokens billed", labels=names
        )
        cost = CounterMetricFamily("slm_router_ledger_cost_usd", "What requests cost, in USD", labels=names)
        baseline = CounterMetricFamily(
            "slm_router_ledger_baseline_cost_usd", "What the baseline model would have charged, in USD", labels=names
        )
        savings = GaugeMetricFamily(
            "slm_router_ledger_savings_usd", "Baseline cost minus cost since the ledger began, in USD", labels=names
        )
        for labels, counts in sorted(self._grouped().items()):
            values = list(labels)
            requests.add_metric(values, float(counts.requests))
            prompt.add_metric(values, float(counts.prompt_tokens))
            completion.add_metric(values, float(counts.completion_tokens))
            cost.add_metric(values, nanos_to_usd(counts.cost_nanos))
            baseline.add_metric(values, nanos_to_usd(counts.baseline_nanos))
            savings.add_metric(values, nanos_to_usd(counts.savings_nanos))
        return [up, requests, prompt, completion, cost, baseline, savings]


class _Forward(Collector):
    """Exposes another registry's collectors inside a per-scrape registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        """The wrapped registry's metrics."""
        yield from self._registry.collect()


async def render_metrics(
    ledger: Ledger | None = None,
    telemetry: Telemetry | None = None,
    *,
    include_key_id: bool | None = None,
    ledger_timeout_s: float = 2.0,
) -> bytes:
    """The text exposition for a ``/metrics`` route (serve it with :data:`CONTENT_TYPE`).

    Reads the ledger's totals from Redis (one HGETALL), then renders them, plus this
    replica's own metrics when ``telemetry`` has a Prometheus registry.
    ``include_key_id`` defaults to the telemetry config's ``key_id_in_metrics``. A
    ledger read slower than ``ledger_timeout_s`` counts as Redis being down, so a
    scrape always answers well within Prometheus's own scrape timeout.
    """
    if include_key_id is None:
        include_key_id = telemetry.config.key_id_in_metrics if telemetry is not None else True
    registry = CollectorRegistry(auto_describe=False)
    if ledger is not None:
        series: list[SeriesCounts] | None
        try:
            async with asyncio.timeout(ledger_timeout_s):
                series = await ledger.totals()
        except Exception as exc:  # noqa: BLE001 - a scrape must answer even when Redis is down
            logger.warning("metrics: cannot read the ledger: %s: %s", type(exc).__name__, exc)
            series = None
        registry.register(LedgerCollector(series, include_key_id=include_key_id))
    if telemetry is not None and telemetry.prometheus_registry is not None:
        registry.register(_Forward(telemetry.prometheus_registry))
    return generate_latest(registry)
