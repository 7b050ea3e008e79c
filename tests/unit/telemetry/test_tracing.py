"""Spans and their parent links through InMemorySpanExporter, with W3C traceparent in and out."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from gateway.errors import UpstreamTimeoutError
from gateway.telemetry import semconv as sc
from tests.unit.telemetry.conftest import Harness

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
INCOMING = {"TraceParent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01", "tracestate": "vendor=abc"}


def by_name(harness: Harness) -> dict[str, ReadableSpan]:
    return {span.name: span for span in harness.spans.get_finished_spans()}


def hex_id(value: int, width: int = 16) -> str:
    return format(value, f"0{width}x")


def test_request_tree_continues_the_client_trace_and_propagates_upstream(harness: Harness) -> None:
    trace = harness.telemetry.start_request(INCOMING)
    with trace.routing() as routing:
        routing.set_attribute(sc.ATTR_TIER, "large")
    call = trace.start_upstream(tier="large", provider="openai", request_model="gpt-4o")
    call.set_usage(12, 3, "gpt-4o-2024-08-06")
    call.end()
    trace.set_route(tier="large", model="gpt-4o", reason="classifier")
    trace.end(status_code=200)

    spans = by_name(harness)
    server = spans["POST /v1/chat/completions"]
    route = spans["slm_router.route"]
    upstream = spans["chat gpt-4o"]
    assert (server.kind, route.kind, upstream.kind) == (SpanKind.SERVER, SpanKind.INTERNAL, SpanKind.CLIENT)
    # Incoming: the server span is a child of the client's span, in the client's trace.
    assert hex_id(server.context.trace_id, 32) == TRACE_ID
    assert server.parent is not None and hex_id(server.parent.span_id) == CLIENT_SPAN
    assert server.parent.is_remote
    assert server.context.trace_state.get("vendor") == "abc"
    # Children hang off the server span.
    for child in (route, upstream):
        assert child.parent is not None and child.parent.span_id == server.context.span_id
        assert child.context.trace_id == server.context.trace_id
    # Outgoing: the upstream sees the CLIENT span as its parent, same trace, sampled.
    assert call.headers["traceparent"] == f"00-{TRACE_ID}-{hex_id(upstream.context.span_id)}-01"
    assert call.headers["tracestate"] == "vendor=abc"
    assert upstream.attributes is not None and server.attributes is not None
    assert upstream.attributes[sc.ATTR_OPERATION] == "chat"
    assert upstream.attributes[sc.ATTR_PROVIDER] == upstream.attributes[sc.ATTR_SYSTEM] == "openai"
    assert upstream.attributes[sc.ATTR_USAGE_INPUT] == 12
    assert upstream.attributes[sc.ATTR_RESPONSE_MODEL] == "gpt-4o-2024-08-06"
    assert server.attributes[sc.ATTR_HTTP_STATUS] == 200
    assert server.attributes[sc.ATTR_ROUTING_REASON] == "classifier"
    assert server.status.status_code == StatusCode.UNSET


def test_without_traceparent_a_new_trace_starts(harness: Harness) -> None:
    trace = harness.telemetry.start_request({})
    call = trace.start_upstream(tier="small", provider="vllm", request_model="smollm2-135m-instruct")
    call.end()
    trace.end(status_code=200)
    spans = by_name(harness)
    server = spans["POST /v1/chat/completions"]
    assert server.parent is None
    assert call.headers["traceparent"].split("-")[1] == trace.trace_id == hex_id(server.context.trace_id, 32)


def test_invalid_traceparent_is_ignored(harness: Harness) -> None:
    trace = harness.telemetry.start_request({"traceparent": "00-zzzz-nope-01"})
    trace.end()
    assert by_name(harness)["POST /v1/chat/completions"].parent is None


def test_errors_mark_spans_but_client_errors_do_not(harness: Harness) -> None:
    with (
        pytest.raises(UpstreamTimeoutError),
        harness.telemetry.request(INCOMING) as trace,
        trace.upstream(tier="large", provider="openai", request_model="gpt-4o"),
    ):
        raise UpstreamTimeoutError("gpt-4o timed out")
    spans = by_name(harness)
    server, upstream = spans["POST /v1/chat/completions"], spans["chat gpt-4o"]
    assert upstream.status.status_code == StatusCode.ERROR
    assert upstream.attributes is not None and upstream.attributes[sc.ATTR_ERROR_TYPE] == "UpstreamTimeoutError"
    assert server.status.status_code == StatusCode.ERROR
    assert server.attributes is not None and server.attributes[sc.ATTR_HTTP_STATUS] == 504
    assert any(event.name == "exception" for event in upstream.events)

    harness.spans.clear()
    trace = harness.telemetry.start_request({})
    trace.end(status_code=404, error="model_not_found")
    (span,) = harness.spans.get_finished_spans()
    assert span.status.status_code == StatusCode.UNSET
    assert span.attributes is not None and span.attributes[sc.ATTR_ERROR_TYPE] == "model_not_found"


async def test_a_stream_ends_its_spans_in_another_task(harness: Harness) -> None:
    trace = harness.telemetry.start_request(INCOMING)
    call = trace.start_upstream(tier="small", provider="vllm", request_model="smollm2-135m-instruct")

    async def frames() -> None:
        await asyncio.sleep(0)
        call.end()
        trace.end(status_code=200)

    await asyncio.create_task(frames())
    trace.end(status_code=500)  # a second end is ignored
    spans = by_name(harness)
    assert len(spans) == 2
    server = spans["POST /v1/chat/completions"]
    assert server.attributes is not None and server.attributes[sc.ATTR_HTTP_STATUS] == 200
    assert spans["chat smollm2-135m-instruct"].parent.span_id == server.context.span_id  # type: ignore[union-attr]
