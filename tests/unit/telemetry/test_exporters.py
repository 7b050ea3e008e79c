"""Exporters: OTLP/HTTP only when the standard env vars ask for it; Prometheus text for /metrics."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.accounting import Counts, RequestCost, SeriesCounts, SeriesKey
from gateway.telemetry import (
    CONTENT_TYPE,
    LedgerCollector,
    RequestRecord,
    Telemetry,
    TelemetryConfig,
    otlp_enabled,
    render_metrics,
)
from tests.conftest import free_port


def test_otlp_is_off_unless_an_endpoint_is_set() -> None:
    assert not otlp_enabled("metrics", {})
    assert otlp_enabled("metrics", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert otlp_enabled("metrics", {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:4318/v1/metrics"})
    assert not otlp_enabled("traces", {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:4318/v1/metrics"})
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}
    assert not otlp_enabled("traces", {**endpoint, "OTEL_SDK_DISABLED": "true"})
    assert not otlp_enabled("traces", {**endpoint, "OTEL_TRACES_EXPORTER": "none"})
    assert otlp_enabled("metrics", {**endpoint, "OTEL_TRACES_EXPORTER": "none"})


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        type(self).received.append((self.path, self.headers.get("content-type", "")))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def otlp_collector() -> Iterator[str]:
    """A real HTTP server on loopback that accepts OTLP/HTTP posts."""
    _Collector.received = []
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_otlp_http_exports_spans_and_metrics(otlp_collector: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The OTLP exporters read the standard variables themselves, as in production.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_collector)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "slm-router-test")
    telemetry = Telemetry(TelemetryConfig())
    assert telemetry.resource.attributes["service.name"] == "slm-router-test"
    trace = telemetry.start_request({})
    trace.end(status_code=200)
    telemetry.record_request(RequestRecord("small", "m", "router", "vllm", duration_s=0.1))
    telemetry.force_flush()
    telemetry.shutdown()
    paths = {path for path, _ in _Collector.received}
    assert {"/v1/traces", "/v1/metrics"} <= paths
    assert all(content_type == "application/x-protobuf" for _, content_type in _Collector.received)


async def test_replica_metrics_render_as_prometheus_text() -> None:
    telemetry = Telemetry(TelemetryConfig(prometheus_replica_metrics=True), environ={}, instance_id="r1")
    telemetry.record_request(
        RequestRecord("small", "m", "router", "vllm", duration_s=0.3, cost=RequestCost(10, 5, 1_000, 9_000))
    )
    text = (await render_metrics(None, telemetry)).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert "slm_router_ledger_up" not in families  # no ledger given
    duration = families["gen_ai_server_request_duration_seconds"]
    assert duration.type == "histogram"
    count = next(s for s in duration.samples if s.name.endswith("_count"))
    assert count.value == 1 and count.labels["service_instance_id"] == "r1"
    assert families["slm_router_cost_usd"].samples[0].value == pytest.approx(1e-6)
    assert families["slm_router_savings_usd"].type == "gauge"  # an up-down counter can go down
    assert CONTENT_TYPE.startswith("text/plain")
    telemetry.shutdown()


def test_ledger_collector_labels_and_outage() -> None:
    series = [
        SeriesCounts(SeriesKey("small", "smol", "k1"), Counts(2, 100, 50, 3_000, 90_000)),
        SeriesCounts(SeriesKey("small", "smol", "k2"), Counts(1, 10, 5, 300, 9_000)),
    ]
    collected = {m.name: m for m in LedgerCollector(series, include_key_id=False).collect()}
    (sample,) = collected["slm_router_ledger_requests"].samples
    assert sample.labels == {"tier": "small", "model": "smol"} and sample.value == 3
    assert collected["slm_router_ledger_cost_usd"].samples[0].value == pytest.approx(3.3e-6)
    assert collected["slm_router_ledger_savings_usd"].samples[0].value == pytest.approx(95.7e-6)
    down = {m.name: m for m in LedgerCollector(None).collect()}
    assert list(down) == ["slm_router_ledger_up"] and down["slm_router_ledger_up"].samples[0].value == 0
