"""The fault harness's load generator against a small local server that refuses with Retry-After."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from loadtest.faults.load import MAX_RETRY_AFTER_S, LoadGenerator, Outcome, only, retry_after_s


def _refused(retry_after: str | None, status: int = 503) -> Outcome:
    return Outcome(model="m", stream=False, started=0.0, status=status, retry_after=retry_after)


@pytest.mark.parametrize(
    ("header", "expected"),
    [("2", 2.0), ("0.5", 0.5), ("3600", MAX_RETRY_AFTER_S), ("-4", 0.0), ("nan", 0.0), (None, 0.0)],
)
def test_retry_after_seconds_are_read_and_capped(header: str | None, expected: float) -> None:
    assert retry_after_s(_refused(header)) == expected


def test_an_http_date_or_a_success_asks_for_no_wait() -> None:
    assert retry_after_s(_refused("Wed, 21 Oct 2026 07:28:00 GMT")) == 0.0
    ok = Outcome(model="m", stream=False, started=0.0, status=200, retry_after="5", cost_nanos=1)
    assert ok.ok and retry_after_s(ok) == 0.0


@pytest.fixture
async def refusing_server() -> AsyncIterator[tuple[str, list[float]]]:
    """A chat endpoint that answers every request with 503 and ``Retry-After: 1``."""
    arrivals: list[float] = []

    async def chat(request: web.Request) -> web.Response:
        arrivals.append(time.monotonic())
        return web.json_response(
            {"error": {"message": "down", "type": "api_error", "param": None, "code": None}},
            status=503,
            headers={"Retry-After": "1"},
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", arrivals
    finally:
        await runner.cleanup()


async def test_clients_wait_out_retry_after_when_asked(refusing_server: tuple[str, list[float]]) -> None:
    base_url, arrivals = refusing_server
    generator = LoadGenerator(base_url, concurrency=2, mix=only("m"), honour_retry_after=True)
    outcomes = await generator.run(2.5)
    # Each of the 2 clients asks at 0, ~1 and ~2 s: 3 requests each, never more.
    assert 4 <= len(outcomes) <= 6
    assert all(o.status == 503 and o.retry_after == "1" for o in outcomes)
    gaps = sorted(b - a for a, b in zip(arrivals, arrivals[2:], strict=False))
    assert gaps[0] >= 0.9  # the same client's consecutive requests are a second apart


async def test_clients_resend_at_once_by_default(refusing_server: tuple[str, list[float]]) -> None:
    base_url, _ = refusing_server
    outcomes = await LoadGenerator(base_url, concurrency=2, mix=only("m")).run(1.0)
    assert len(outcomes) > 20


async def test_stopping_the_run_cuts_a_long_wait_short(refusing_server: tuple[str, list[float]]) -> None:
    base_url, _ = refusing_server
    generator = LoadGenerator(base_url, concurrency=1, mix=only("m"), honour_retry_after=True)
    stop = asyncio.Event()
    task = asyncio.create_task(generator.run(30.0, stop))
    await asyncio.sleep(0.3)  # the client got its 503 and is waiting out Retry-After
    began = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, 5.0)
    assert time.monotonic() - began < 0.5
    assert len(generator.outcomes) == 1
