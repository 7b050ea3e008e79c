"""A Telemetry wired to in-memory readers and exporters."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Metric
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.telemetry import Telemetry, TelemetryConfig


@dataclass
class Harness:
    telemetry: Telemetry
    reader: InMemoryMetricReader
    spans: InMemorySpanExporter

    def metrics(self) -> dict[str, Metric]:
        """The metrics collected now, by name."""
        data = self.reader.get_metrics_data()
        if data is None:  # nothing recorded yet
            return {}
        return {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}

    def points(self, name: str) -> list[Any]:
        return list(self.metrics()[name].data.data_points)


def make_harness(config: TelemetryConfig | None = None, **kwargs: Any) -> Harness:
    reader = InMemoryMetricReader()
    spans = InMemorySpanExporter()
    telemetry = Telemetry(
        config,
        metric_readers=[reader],
        span_processors=[SimpleSpanProcessor(spans)],
        environ={},
        instance_id="replica-1",
        **kwargs,
    )
    return Harness(telemetry, reader, spans)


@pytest.fixture()
def harness() -> Iterator[Harness]:
    h = make_harness(large_tiers={"large"})
    yield h
    h.telemetry.shutdown()
