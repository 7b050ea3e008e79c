"""Metrics and traces with OpenTelemetry, and the Prometheus ``/metrics`` exposition.

Create one :class:`Telemetry` per replica. Per-request figures go to its instruments
(exported over OTLP when ``OTEL_EXPORTER_OTLP_*`` is set); exact, cluster-wide money
and token totals come from the Redis ledger through :func:`render_metrics`.
"""

from gateway.telemetry.config import TelemetryConfig
from gateway.telemetry.instruments import GatewayMetrics, RequestRecord, UpstreamRecord
from gateway.telemetry.naming import provider_name
from gateway.telemetry.prometheus import CONTENT_TYPE, LEDGER_METRICS, LedgerCollector, render_metrics
from gateway.telemetry.provider import INSTRUMENTATION_SCOPE, Telemetry, otlp_enabled
from gateway.telemetry.tracing import RequestTrace, UpstreamCall, extract_context, inject_headers

__all__ = [
    "CONTENT_TYPE",
    "INSTRUMENTATION_SCOPE",
    "LEDGER_METRICS",
    "GatewayMetrics",
    "LedgerCollector",
    "RequestRecord",
    "RequestTrace",
    "Telemetry",
    "TelemetryConfig",
    "UpstreamCall",
    "UpstreamRecord",
    "extract_context",
    "inject_headers",
    "otlp_enabled",
    "provider_name",
    "render_metrics",
]
