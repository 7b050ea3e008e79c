"""Request traces: one SERVER span per request, with routing and upstream (CLIENT) children.

Spans are started with an explicit parent context instead of being made "current".
A streamed response outlives the handler that started it and finishes in another
task, where detaching a context token from ``contextvars`` fails; explicit parents
keep the tree right wherever the span is ended.

Trace context comes in from the client's ``traceparent``/``tracestate`` headers and
goes out to the upstream in the header dict :attr:`UpstreamCall.headers` (W3C Trace
Context only: no baggage is forwarded, so nothing a client sends leaks upstream).
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.telemetry import semconv as sc

__all__ = ["RequestTrace", "UpstreamCall", "extract_context", "inject_headers"]

_PROPAGATOR = TraceContextTextMapPropagator()  # stateless, so sharing it is not mutable global state


def extract_context(headers: Mapping[str, str]) -> Context:
    """The parent context a client sent in ``traceparent``/``tracestate`` (any header case)."""
    carrier = {key.lower(): value for key, value in headers.items()}
    return _PROPAGATOR.extract(carrier)


def inject_headers(span: Span) -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) headers that make ``span`` the upstream's parent."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=set_span_in_context(span))
    return carrier


def _fail(span: Span, error: BaseException | str) -> None:
    if isinstance(error, BaseException):
        # This exception's own traceback only, without its chain: a gateway error's
        # __cause__ is the raw upstream exception, whose message quotes the upstream's
        # error body, and providers echo the API key they were sent in there.
        stacktrace = "".join(traceback.format_exception(error, chain=False))
        span.record_exception(error, attributes={"exception.stacktrace": stacktrace})
        error_type = type(error).__name__
        description = f"{error_type}: {error}"
    else:
        error_type = description = error
    span.set_attribute(sc.ATTR_ERROR_TYPE, error_type)
    span.set_status(Status(StatusCode.ERROR, description[:256]))


class UpstreamCall:
    """The CLIENT span of one call to a model upstream, and the headers to send it."""

    def __init__(self, span: Span) -> None:
        self.span = span
        #: Pass these to the upstream (litellm's ``extra_headers``, or an HTTP client).
        self.headers: dict[str, str] = inject_headers(span)
        self._ended = False

    def set_usage(self, prompt_tokens: int, completion_tokens: int, response_model: str | None = None) -> None:
        """Record the token usage the upstream reported."""
        self.span.set_attribute(sc.ATTR_USAGE_INPUT, prompt_tokens)
        self.span.set_attribute(sc.ATTR_USAGE_OUTPUT, completion_tokens)
        if response_model:
            self.span.set_attribute(sc.ATTR_RESPONSE_MODEL, response_model)

    def end(self, error: BaseException | str | None = None) -> None:
        """End the span (idempotent), marking it failed when ``error`` is given."""
        if self._ended:
            return
        self._ended = True
        if error is not None:
            _fail(self.span, error)
        self.span.end()


class RequestTrace:
    """The spans of one gateway request. End it exactly once (extra calls are ignored)."""

    def __init__(self, tracer: Tracer, span: Span) -> None:
        self._tracer = tracer
        self.span = span
        self._context = set_span_in_context(span)
        self._ended = False

    @property
    def trace_id(self) -> str:
        """The trace id as 32 hex digits (for logs and an ``x-request-trace`` style header)."""
        return format(self.span.get_span_context().trace_id, "032x")

    def start_routing(self, attributes: Mapping[str, Any] | None = None) -> Span:
        """An INTERNAL child span around the routing decision; end it yourself."""
        return self._tracer.start_span(
            "slm_router.route", context=self._context, kind=SpanKind.INTERNAL, attributes=dict(attributes or {})
        )

    @contextmanager
    def routing(self) -> Iterator[Span]:
        """``with trace.routing() as span:`` around the routing decision."""
        span = self.start_routing()
        try:
            yield span
        except BaseException as exc:
            _fail(span, exc)
            raise
        finally:
            span.end()

    def start_upstream(
        self,
        *,
        tier: str,
        provider: str,
        request_model: str,
        server_address: str | None = None,
        operation: str = sc.OPERATION_CHAT,
    ) -> UpstreamCall:
        """A CLIENT child span named ``<operation> <model>`` (GenAI conventions: ``chat gpt-4o``)
        for one upstream call."""
        attributes: dict[str, Any] = {
            sc.ATTR_OPERATION: operation,
            sc.ATTR_PROVIDER: provider,
            sc.ATTR_SYSTEM: provider,
            sc.ATTR_REQUEST_MODEL: request_model,
            sc.ATTR_TIER: tier,
        }
        if server_address:
            attributes["server.address"] = server_address
        span = self._tracer.start_span(
            f"{operation} {request_model}", context=self._context, kind=SpanKind.CLIENT, attributes=attributes
        )
        return UpstreamCall(span)

    @contextmanager
    def upstream(self, *, tier: str, provider: str, request_model: str) -> Iterator[UpstreamCall]:
        """``with trace.upstream(...) as call: send(call.headers)``; failures mark the span."""
        call = self.start_upstream(tier=tier, provider=provider, request_model=request_model)
        try:
            yield call
        except BaseException as exc:
            call.end(exc)
            raise
        finally:
            call.end()

    def set_route(self, *, tier: str, model: str, reason: str | None = None) -> None:
        """Record where the request went."""
        self.span.set_attribute(sc.ATTR_TIER, tier)
        self.span.set_attribute(sc.ATTR_RESPONSE_MODEL, model)
        if reason:
            self.span.set_attribute(sc.ATTR_ROUTING_REASON, reason)

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Add attributes to the request span (e.g. cost figures, key id)."""
        for key, value in attributes.items():
            if value is not None:
                self.span.set_attribute(key, value)

    def end(self, *, status_code: int | None = None, error: BaseException | str | None = None) -> None:
        """End the request span. 5xx status codes and errors mark it failed; 4xx do not
        (client mistakes are not server failures, as the HTTP conventions say)."""
        if self._ended:
            return
        self._ended = True
        if status_code is not None:
            self.span.set_attribute(sc.ATTR_HTTP_STATUS, status_code)
        if error is not None and (status_code is None or status_code >= 500):
            _fail(self.span, error)
        elif status_code is not None and status_code >= 500:
            _fail(self.span, str(status_code))
        elif error is not None:
            self.span.set_attribute(
                sc.ATTR_ERROR_TYPE, type(error).__name__ if isinstance(error, BaseException) else error
            )
        self.span.end()
