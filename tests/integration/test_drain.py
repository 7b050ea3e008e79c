"""A replica that drains before it stops: newcomers get a retryable 503, open requests finish.

Serve's own drain begins only once the application is deleted, when its proxy has dropped the
route and answers newcomers with a plain-text 404; ``LocalGateway.stop`` drains the replicas
first (``tests/serve/test_cli_serve.py`` runs that end to end).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from gateway.config import GatewayConfig
from gateway.http.open_requests import OpenRequests
from gateway.redis_server import EmbeddedRedis
from tests.fakes.openai_upstream import FakeOpenAIUpstream, UpstreamBehaviour
from tests.integration.conftest import AppFactory, flushed_totals, gateway_config

CHAT = "/v1/chat/completions"


def body(model: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "q"}]}


@pytest.fixture()
def config(redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream) -> GatewayConfig:
    return gateway_config(redis_server.url, fake_upstream.base_url, state={"prefix": f"d{uuid.uuid4().hex[:8]}"})


async def _until_open(counter: OpenRequests, count: int) -> None:
    for _ in range(1000):
        if counter.value == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{counter.value} requests open, not {count}")


async def test_draining_refuses_newcomers_with_503_and_waits_for_open_requests(
    make_app: AppFactory, config: GatewayConfig, upstream_behaviour: UpstreamBehaviour
) -> None:
    counter = OpenRequests()
    async with make_app(config, open_requests=counter) as (client, services):
        assert (await client.get("/health/ready")).status_code == 200
        upstream_behaviour.latency_s = 1.0
        slow = asyncio.create_task(client.post(CHAT, json=body("fake-large")))
        await _until_open(counter, 1)

        drain = asyncio.create_task(counter.drain(30))
        await asyncio.sleep(0)  # the drain task starts
        assert counter.draining
        refused = await client.post(CHAT, json=body("small-model"))
        ready = await client.get("/health/ready")
        models = await client.get("/v1/models")
        live = await client.get("/health/live")
        assert not drain.done()  # the slow request is still open

        assert refused.status_code == 503
        assert refused.json() == {
            "error": {
                "message": "this slm-router replica is shutting down; retry the request",
                "type": "service_unavailable",
                "param": None,
                "code": "shutting_down",
            }
        }
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["connection"] == "close"
        assert models.status_code == 503
        # A balancer stops sending to a replica that is not ready; the process is still alive.
        assert ready.status_code == 503 and ready.json()["status"] == "draining"
        assert live.status_code == 200

        answered = await slow
        assert answered.status_code == 200, answered.text
        assert await asyncio.wait_for(drain, 10) == 0
        assert counter.value == 0
        # The answered request is in the ledger; the refused one never started.
        totals = await flushed_totals(services)
        assert sum(series.counts.requests for series in totals) == 1


async def test_a_drain_that_runs_out_of_time_says_how_many_are_still_open(
    make_app: AppFactory, config: GatewayConfig, upstream_behaviour: UpstreamBehaviour
) -> None:
    counter = OpenRequests()
    async with make_app(config, open_requests=counter) as (client, _):
        upstream_behaviour.latency_s = 2.0
        slow = asyncio.create_task(client.post(CHAT, json=body("fake-large")))
        await _until_open(counter, 1)
        assert await counter.drain(0.2) == 1  # the stop goes on; Serve's own drain takes over
        assert (await slow).status_code == 200  # still answered
        assert await counter.drain(0) == 0  # idle: at once


async def test_an_idle_replica_drains_at_once() -> None:
    counter = OpenRequests()
    async with asyncio.timeout(1):
        assert await counter.drain(60) == 0
    assert counter.draining
