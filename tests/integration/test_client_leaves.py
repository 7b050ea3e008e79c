"""A client that leaves a stream before its first byte still stops the generation and is charged.

The gateway answers a stream only after the engine's first delta (so that an early failure is a
proper HTTP error), so by the time the response starts the engine is generating and the prompt
is paid for. Starlette never touches a body it has not started to read, so a client that is gone
before the first frame left the generation running and its usage unrecorded. These tests drive
the ASGI app directly, the way a server does when the socket is already closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.requests import ClientDisconnect

from gateway.engine import EngineDelta, GenerationRequest
from gateway.http import GatewayServices, create_http_app
from gateway.redis_server import EmbeddedRedis
from gateway.serving.assembly import build_replica_services
from tests.fakes.engines import ScriptedEngine
from tests.fakes.openai_upstream import FakeOpenAIUpstream, UpstreamBehaviour
from tests.integration.conftest import ADMIN_KEY, flushed_totals, gateway_config, make_tiers
from tests.integration.test_keys_limits_cache import request_counts

Message = dict[str, Any]
Send = Callable[[Message], Awaitable[None]]

BODIES: dict[str, dict[str, Any]] = {
    "chat": {"model": "small-model", "messages": [{"role": "user", "content": "hi"}], "stream": True},
    "legacy functions": {
        "model": "small-model",
        "messages": [{"role": "user", "content": "hi"}],
        "functions": [{"name": "f", "parameters": {"type": "object", "properties": {}}}],
        # Offered, not called: the answer still takes the legacy shape's stream wrapper.
        "function_call": "none",
        "stream": True,
    },
    "responses": {"model": "small-model", "input": "hi", "stream": True},
}
PATHS = {"chat": "/v1/chat/completions", "legacy functions": "/v1/chat/completions", "responses": "/v1/responses"}


def scope(path: str, spec_version: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": spec_version},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"host", b"gateway")],
        "client": ("127.0.0.1", 1234),
        "server": ("gateway", 80),
    }


def receiver(body: bytes, gone: asyncio.Event) -> Callable[[], Awaitable[Message]]:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    return receive


@pytest.mark.parametrize("spec_version", ["2.4", "2.3"])
@pytest.mark.parametrize("kind", list(BODIES))
async def test_a_client_gone_before_the_first_frame_stops_generation_and_is_charged(
    redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream, kind: str, spec_version: str
) -> None:
    config = gateway_config(redis_server.url, fake_upstream.base_url)
    small = ScriptedEngine(model="small-model", pieces=["tok"] * 16, prompt_tokens=7)
    tiers = await make_tiers(config, small)
    services = await build_replica_services(config, tiers, environ={"SLM_ROUTER_ADMIN_KEY": ADMIN_KEY})
    try:
        app = create_http_app(GatewayServices.of(services), max_body_bytes=config.server.max_body_bytes)
        gone = asyncio.Event()
        messages: list[Message] = []

        async def send(message: Message) -> None:
            messages.append(message)
            if message["type"] == "http.response.start":
                # The socket is closed: a 2.4 server raises from send; an older one reports
                # http.disconnect to whoever is listening, and this send never returns.
                gone.set()
                if spec_version == "2.4":
                    raise OSError("connection reset by peer")
                await asyncio.Event().wait()

        call = app(scope(PATHS[kind], spec_version), receiver(json.dumps(BODIES[kind]).encode(), gone), send)
        # The server sees the disconnect (2.4: ClientDisconnect); what matters is what follows.
        with contextlib.suppress(ClientDisconnect):
            await asyncio.wait_for(call, timeout=10)
        assert [m["type"] for m in messages] == ["http.response.start"]
        assert messages[0]["status"] == 200
        assert small.closed == 1, "the engine's stream was left open"
        await services.observer.drain()
        totals = await flushed_totals(services)
        assert [(s.series.tier, s.counts.requests, s.counts.prompt_tokens) for s in totals] == [("small", 1, 7)]
    finally:
        await services.close()


@pytest.mark.parametrize("stream", [False, True])
async def test_a_client_gone_before_the_answer_is_counted_as_a_hang_up_and_charged_nothing(
    redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream, stream: bool
) -> None:
    # Ray Serve cancels a request's task when its client hangs up; here the task is cancelled
    # while the engine is still working on the answer (or, streaming, on the first token).
    config = gateway_config(redis_server.url, fake_upstream.base_url)
    generating = asyncio.Event()
    small = StallingEngine(generating, model="small-model")
    reader, spans = InMemoryMetricReader(), InMemorySpanExporter()
    services = await build_replica_services(
        config,
        await make_tiers(config, small),
        environ={"SLM_ROUTER_ADMIN_KEY": ADMIN_KEY},
        metric_readers=[reader],
        span_processors=[SimpleSpanProcessor(spans)],
    )
    try:
        app = create_http_app(GatewayServices.of(services), max_body_bytes=config.server.max_body_bytes)
        body = {"model": "small-model", "messages": [{"role": "user", "content": "hi"}], "stream": stream}

        async def send(message: Message) -> None:
            raise AssertionError(f"nothing should be sent, got {message['type']}")

        receive = receiver(json.dumps(body).encode(), asyncio.Event())
        call = asyncio.ensure_future(app(scope(PATHS["chat"], "2.4"), receive, send))
        await generating.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert small.closed == 1
        await services.observer.drain()
        assert await flushed_totals(services) == []
        assert request_counts(reader) == {("small-model", "client_closed_request"): 1}
        (server,) = [s for s in spans.get_finished_spans() if s.kind.name == "SERVER"]
        assert server.attributes is not None and server.attributes["http.response.status_code"] == 499
        assert server.status.status_code.name != "ERROR"  # a hang-up is not a server failure
    finally:
        await services.close()


@pytest.mark.parametrize("upstream_fails", [False, True])
async def test_a_hosted_call_the_client_left_runs_on_and_is_charged_as_billed(
    redis_server: EmbeddedRedis,
    fake_upstream: FakeOpenAIUpstream,
    upstream_behaviour: UpstreamBehaviour,
    upstream_fails: bool,
) -> None:
    # A hosted API finishes (and bills) a non-streamed completion whether or not its caller is
    # still there; the ledger must show what the provider's invoice will.
    config = gateway_config(redis_server.url, fake_upstream.base_url)
    reader, spans = InMemoryMetricReader(), InMemorySpanExporter()
    services = await build_replica_services(
        config,
        await make_tiers(config),
        environ={"SLM_ROUTER_ADMIN_KEY": ADMIN_KEY},
        metric_readers=[reader],
        span_processors=[SimpleSpanProcessor(spans)],
    )
    upstream_behaviour.latency_s = 0.5
    if upstream_fails:
        upstream_behaviour.fail_status = 500
    try:
        app = create_http_app(GatewayServices.of(services), max_body_bytes=config.server.max_body_bytes)
        body = {"model": "fake-large", "messages": [{"role": "user", "content": "one two three"}]}

        async def send(message: Message) -> None:
            raise AssertionError(f"nothing should be sent, got {message['type']}")

        receive = receiver(json.dumps(body).encode(), asyncio.Event())
        call = asyncio.ensure_future(app(scope(PATHS["chat"], "2.4"), receive, send))
        for _ in range(1000):  # until the call is at the provider (the fake serves from its own thread)
            if upstream_behaviour.requests:
                break
            await asyncio.sleep(0.01)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert await flushed_totals(services) == []  # nothing to charge yet: the answer is not back
        await services.observer.drain()
        assert len(upstream_behaviour.requests) == 1  # run on, not retried
        totals = await flushed_totals(services)
        if upstream_fails:
            assert totals == []
        else:
            # 3 prompt words; "large says: one two three" is 5 completion words.
            [(series, counts)] = [(s.series, s.counts) for s in totals]
            assert (series.tier, counts.requests, counts.prompt_tokens, counts.completion_tokens) == ("large", 1, 3, 5)
            assert counts.cost_nanos > 0
        assert request_counts(reader) == {("fake-large", "client_closed_request"): 1}
        (server,) = [s for s in spans.get_finished_spans() if s.kind.name == "SERVER"]
        assert server.attributes is not None and server.attributes["http.response.status_code"] == 499
    finally:
        await services.close()


class StallingEngine(ScriptedEngine):
    """Starts generating, says so, and never produces a token."""

    def __init__(self, generating: asyncio.Event, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.generating = generating

    async def stream(self, request: GenerationRequest) -> AsyncIterator[EngineDelta]:
        try:
            self.generating.set()
            await asyncio.Event().wait()
            yield EngineDelta("never")
        finally:
            self.closed += 1
