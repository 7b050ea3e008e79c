"""Configuration of metrics and traces (``telemetry:`` in the gateway YAML).

Exporter endpoints are *not* here: OTLP follows the standard ``OTEL_*`` environment
variables, so operators configure it the way they configure every other service.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["TelemetryConfig"]


class TelemetryConfig(BaseModel):
    """Metrics and traces of one gateway replica."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    #: ``service.name``; ``OTEL_SERVICE_NAME`` wins when set.
    service_name: str = "slm-router"
    #: Also expose this replica's OpenTelemetry metrics (latency histograms, ...) on
    #: ``/metrics``. Only meaningful with one ingress replica: through Serve's proxy a
    #: scrape lands on a random replica. With several, export them over OTLP instead.
    prometheus_replica_metrics: bool = False
    #: Put the key id on metric attributes and ledger-backed Prometheus labels. Turn off
    #: when there are thousands of keys (cardinality); the Redis ledger keeps them anyway.
    key_id_in_metrics: bool = True
    #: Tiers counted as "large" for ``slm_router.large_share``; empty: the accounting baseline.
    large_tiers: list[str] = Field(default_factory=list)
    #: The large share is over this replica's last N requests.
    large_share_window: int = Field(1000, ge=1)
