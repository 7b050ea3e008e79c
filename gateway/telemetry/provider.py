"""One :class:`Telemetry` per replica: its own MeterProvider, TracerProvider and exporters.

Nothing is installed as the OpenTelemetry *global* provider unless ``set_global=True``:
tests build several side by side, and libraries that instrument themselves through
the global API (litellm, Ray) keep whatever the process already chose.

Exporters:

* OTLP over HTTP, configured only by the standard environment variables
  (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_{METRICS,TRACES}_ENDPOINT``,
  ``..._HEADERS``, ``OTEL_METRIC_EXPORT_INTERVAL``, ...). Off unless an endpoint is set;
  ``OTEL_SDK_DISABLED=true`` or ``OTEL_{METRICS,TRACES}_EXPORTER=none`` turn it off.
* Prometheus, optional (``prometheus_replica_metrics``): this replica's instruments in
  a private ``CollectorRegistry``, rendered by :func:`gateway.telemetry.render_metrics`.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from gateway.telemetry import semconv as sc
from gateway.telemetry.config import TelemetryConfig
from gateway.telemetry.instruments import GatewayMetrics, RequestRecord, UpstreamRecord
from gateway.telemetry.tracing import RequestTrace, extract_context

__all__ = ["INSTRUMENTATION_SCOPE", "Telemetry", "otlp_enabled"]

INSTRUMENTATION_SCOPE = "slm_router"


def _env_true(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() == "true"


def otlp_enabled(signal: str, environ: Mapping[str, str]) -> bool:
    """Whether OTLP export of ``signal`` (``metrics`` or ``traces``) is configured in ``environ``."""
    if _env_true(environ, "OTEL_SDK_DISABLED"):
        return False
    if environ.get(f"OTEL_{signal.upper()}_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    )


class Telemetry:
    """Metrics and traces of one gateway replica.

    Create it once per replica (in the ingress's constructor) and call
    :meth:`shutdown` when the replica stops, so buffered spans and metrics are flushed.
    """

    def __init__(
        self,
        config: TelemetryConfig | None = None,
        *,
        large_tiers: Collection[str] = (),
        instance_id: str | None = None,
        metric_readers: Sequence[MetricReader] = (),
        span_processors: Sequence[SpanProcessor] = (),
        environ: Mapping[str, str] | None = None,
        set_global: bool = False,
    ) -> None:
        """Build the providers.

        ``large_tiers`` applies when the config names none (pass the accounting
        baseline tier). ``instance_id`` becomes ``service.instance.id`` (default: a
        random id; pass the Serve replica id to correlate with Ray). ``metric_readers``
        and ``span_processors`` are added to those the environment configures (tests
        pass in-memory ones). ``environ`` defaults to ``os.environ``.
        """
        self.config = config or TelemetryConfig()
        env = os.environ if environ is None else environ
        attributes: dict[str, Any] = {"service.instance.id": instance_id or uuid.uuid4().hex}
        if not env.get("OTEL_SERVICE_NAME"):
            attributes["service.name"] = self.config.service_name
        # Resource.create also merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME.
        self.resource = Resource.create(attributes)
        self.instance_id = str(self.resource.attributes["service.instance.id"])

        readers = list(metric_readers)
        self.prometheus_registry: CollectorRegistry | None = None
        if self.config.enabled and self.config.prometheus_replica_metrics:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader

            self.prometheus_registry = CollectorRegistry(auto_describe=False)
            readers.append(
                PrometheusMetricReader(
                    registry=self.prometheus_registry,
                    # One scope only; its otel_scope_* labels would just repeat on every series.
                    scope_info_enabled=False,
                    resource_attribute_filter=lambda key: key == "service.instance.id",
                )
            )
        if self.config.enabled and otlp_enabled("metrics", env):
            # Imported only when used: the OTLP exporter pulls in protobuf and requests.
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        self.meter_provider = MeterProvider(metric_readers=readers, resource=self.resource, shutdown_on_exit=False)

        self.tracer_provider = TracerProvider(resource=self.resource, shutdown_on_exit=False)
        for processor in span_processors:
            self.tracer_provider.add_span_processor(processor)
        if self.config.enabled and otlp_enabled("traces", env):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            self.tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self.tracer = self.tracer_provider.get_tracer(INSTRUMENTATION_SCOPE)
        self.metrics = GatewayMetrics(
            self.meter_provider.get_meter(INSTRUMENTATION_SCOPE),
            large_tiers=self.config.large_tiers or large_tiers,
            key_id_in_metrics=self.config.key_id_in_metrics,
            large_share_window=self.config.large_share_window,
        )
        self._shut_down = False
        if set_global:
            otel_metrics.set_meter_provider(self.meter_provider)
            otel_trace.set_tracer_provider(self.tracer_provider)

    # --- traces ---------------------------------------------------------------------

    def start_request(
        self,
        headers: Mapping[str, str],
        *,
        method: str = "POST",
        route: str = "/v1/chat/completions",
        attributes: Mapping[str, Any] | None = None,
    ) -> RequestTrace:
        """Start the SERVER span of a request, continuing the client's trace if it sent one.

        End it with :meth:`RequestTrace.end` when the last byte is sent (for a stream:
        in the generator's ``finally``).
        """
        span_attributes: dict[str, Any] = {sc.ATTR_HTTP_METHOD: method, sc.ATTR_HTTP_ROUTE: route}
        span_attributes.update(attributes or {})
        span = self.tracer.start_span(
            f"{method} {route}", context=extract_context(headers), kind=SpanKind.SERVER, attributes=span_attributes
        )
        return RequestTrace(self.tracer, span)

    @contextmanager
    def request(
        self, headers: Mapping[str, str], *, method: str = "POST", route: str = "/v1/chat/completions"
    ) -> Iterator[RequestTrace]:
        """Context-manager form of :meth:`start_request` for non-stream handlers."""
        trace = self.start_request(headers, method=method, route=route)
        try:
            yield trace
        except BaseException as exc:
            status = getattr(exc, "status_code", None)
            trace.end(status_code=status if isinstance(status, int) else 500, error=exc)
            raise
        finally:
            trace.end()

    # --- metrics --------------------------------------------------------------------

    def record_request(self, record: RequestRecord) -> None:
        """See :meth:`GatewayMetrics.record_request`."""
        self.metrics.record_request(record)

    def record_upstream(self, record: UpstreamRecord) -> None:
        """See :meth:`GatewayMetrics.record_upstream`."""
        self.metrics.record_upstream(record)

    def record_routing(self, duration_s: float, *, tier: str, reason: str) -> None:
        """See :meth:`GatewayMetrics.record_routing`."""
        self.metrics.record_routing(duration_s, tier=tier, reason=reason)

    def record_escalation(self, *, from_tier: str, to_tier: str, reason: str) -> None:
        """See :meth:`GatewayMetrics.record_escalation`."""
        self.metrics.record_escalation(from_tier=from_tier, to_tier=to_tier, reason=reason)

    def record_fallback(self, *, from_tier: str, to_tier: str, reason: str) -> None:
        """See :meth:`GatewayMetrics.record_fallback`."""
        self.metrics.record_fallback(from_tier=from_tier, to_tier=to_tier, reason=reason)

    @staticmethod
    def clock() -> float:
        """The monotonic clock durations should be measured with."""
        return time.perf_counter()

    # --- lifecycle ------------------------------------------------------------------

    def force_flush(self, timeout_millis: int = 10_000) -> None:
        """Push buffered spans and metrics to the exporters now."""
        self.tracer_provider.force_flush(timeout_millis)
        self.meter_provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Flush and stop the exporters; later calls do nothing."""
        if self._shut_down:
            return
        self._shut_down = True
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
