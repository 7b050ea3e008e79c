"""A pooled connection that the upstream closes as it is reused costs one immediate redial, not a 502.

A server whose keep-alive timeout equals the client's (uvicorn's 5 s: any vLLM or stand-in
server) closes an idle connection just as the client reuses it, now and then. The CI run that
caught this saw one 502 in a fault test: a named large-model request after ~5 s of idleness,
``Cannot write to closing transport``, on a tier with ``num_retries: 0``. The server here makes
that race certain: it answers the first request on a connection and closes the connection when
the next one arrives on it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator

import pytest

from deployments.hosted_engine import build_hosted_engine
from deployments.upstream_retries import call_with_retries, dropped_connection
from gateway.config import LiteLLMTierConfig
from gateway.engine import ChatEngine, GenerationRequest
from gateway.errors import GatewayError, UpstreamError, UpstreamTimeoutError


class DroppingServer:
    """Minimal HTTP/1.1 server speaking just enough of Chat Completions.

    ``drop_reused``: a request that arrives on a connection that has already been answered is
    dropped (the connection closes, no answer). ``drop_all``: every request is dropped.
    """

    def __init__(self, *, drop_all: bool = False) -> None:
        self.drop_all = drop_all
        self.requests = 0
        self.dropped = 0
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        answered = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                body = json.loads(await reader.readexactly(length)) if length else {}
                self.requests += 1
                if self.drop_all or answered:
                    self.dropped += 1
                    break
                writer.write(_answer(body))
                await writer.drain()
                answered += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _answer(body: dict[str, object]) -> bytes:
    if body.get("stream"):
        chunks = [
            {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "pong"}, "finish_reason": None}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}},
        ]
        frames = [
            {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", **chunk} for chunk in chunks
        ]
        payload = "".join(f"data: {json.dumps(frame)}\n\n" for frame in frames) + "data: [DONE]\n\n"
        content_type = "text/event-stream"
    else:
        payload = json.dumps(
            {
                "id": "c1",
                "object": "chat.completion",
                "created": 1,
                "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "pong"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            }
        )
        content_type = "application/json"
    data = payload.encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(data)}\r\n\r\n"
    return head.encode() + data


@pytest.fixture(params=["litellm", "openai"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def server() -> AsyncIterator[DroppingServer]:
    running = DroppingServer()
    yield running
    await running.stop()


def _engine(api_base: str, transport: str, num_retries: int = 0) -> ChatEngine:
    tier = LiteLLMTierConfig(
        transport=transport,
        served_model_name="drop-large",
        model="openai/drop-large",
        api_base=api_base,
        api_key_env=None,
        timeout_s=5,
        num_retries=num_retries,
        retry_backoff_s=0.01,
    )
    return build_hosted_engine(tier)


def _gen() -> GenerationRequest:
    return GenerationRequest("req-drop", [{"role": "user", "content": "ping"}], max_tokens=4)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_reused_connection_closed_by_the_upstream_is_redialled(
    server: DroppingServer, transport: str, stream: bool
) -> None:
    eng = _engine(await server.start(), transport)
    await eng.start()
    try:
        for _ in range(3):
            if stream:
                deltas = [d async for d in eng.stream(_gen())]
                assert "".join(d.text for d in deltas) == "pong"
                assert deltas[-1].completion_tokens == 1
            else:
                assert (await eng.complete(_gen())).text == "pong"
    finally:
        await eng.shutdown()
    # Calls 2 and 3 each met a dropped connection first, then answered on a fresh one.
    assert server.dropped == 2
    assert server.requests == 5
    assert server.connections == 3


async def test_an_upstream_that_drops_every_connection_is_a_502_after_one_redial(transport: str) -> None:
    server = DroppingServer(drop_all=True)
    base = await server.start()
    try:
        for num_retries, attempts in ((0, 2), (2, 4)):
            server.requests = 0
            eng = _engine(base, transport, num_retries=num_retries)
            await eng.start()
            with pytest.raises(UpstreamError):
                await eng.complete(_gen())
            await eng.shutdown()
            # The first attempt, one redial, and the configured retries: no more.
            assert server.requests == attempts
    finally:
        await server.stop()


async def test_a_refused_connection_is_not_redialled(transport: str) -> None:
    server = DroppingServer()
    base = await server.start()
    await server.stop()  # nothing listens on the port now
    with pytest.raises(UpstreamError) as refused:
        await _engine(base, transport).complete(_gen())
    # The upstream is down: the real error chain (down to the refused connect) is not a drop.
    assert not dropped_connection(refused.value)


def _chain(*errors: BaseException) -> BaseException:
    for outer, inner in itertools.pairwise(errors):
        outer.__cause__ = inner
    return errors[0]


@pytest.mark.parametrize(
    ("error", "dropped"),
    [
        (ConnectionResetError("reset by peer"), True),
        (_chain(RuntimeError("Connection error."), BrokenPipeError()), True),
        (ConnectionRefusedError(), False),
        (TimeoutError(), False),
        (_chain(RuntimeError("wrapped"), TimeoutError(), ConnectionResetError()), False),
        (ValueError("bad json"), False),
        (UpstreamError("status 500"), False),
    ],
)
def test_what_counts_as_a_dropped_connection(error: BaseException, dropped: bool) -> None:
    assert dropped_connection(error) is dropped


async def test_a_timeout_is_not_redialled_and_counts_as_a_retry() -> None:
    calls = 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        raise TimeoutError

    def translate(exc: Exception) -> GatewayError:
        return UpstreamTimeoutError("slow") if isinstance(exc, TimeoutError) else UpstreamError("other")

    with pytest.raises(UpstreamTimeoutError):
        await call_with_retries(call, translate, num_retries=1, backoff_s=0.0)
    assert calls == 2
