"""Background responses (``"background": true``) over a real Redis and two replicas: answered
``queued`` at once, run on, polled with ``GET``, cancelled from any replica, and read as failed
when the replica running them stops."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import httpx
import openai
import pytest

from gateway.config import GatewayConfig
from gateway.errors import UpstreamError
from gateway.protocol.responses import ResponsesRequest
from gateway.redis_server import EmbeddedRedis
from gateway.serving.responses_output import ResponseShell
from gateway.state import StoredResponse
from tests.fakes.engines import ScriptedEngine
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.integration.conftest import AppFactory, flushed_totals, gateway_config, sdk
from tests.integration.test_keys_limits_cache import ADMIN, auth_config, request_counts

RESPONSES = "/v1/responses"


async def until(check: Callable[[], Awaitable[bool]], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.05)


async def status(client: httpx.AsyncClient, response_id: str) -> str:
    answer = await client.get(f"{RESPONSES}/{response_id}")
    assert answer.status_code == 200, answer.text
    return str(answer.json()["status"])


async def test_queued_at_once_then_completed_and_chained(
    make_app: AppFactory, background_config: GatewayConfig
) -> None:
    small = ScriptedEngine(["Hello", ",", " world"], model="small-model", delay_s=0.05)
    async with make_app(background_config, small=small) as (client, services):
        api = sdk(client)
        queued = await api.responses.create(model="small-model", input="Say hello.", background=True)
        assert (queued.status, queued.background, queued.output) == ("queued", True, [])
        await until(lambda: _is(api, queued.id, "completed"))
        done = await api.responses.retrieve(queued.id)
        assert done.output_text == "Hello, world" and done.background and done.usage is not None
        assert done.id == queued.id and done.created_at == queued.created_at
        # Replaying it as a stream is refused, not answered with JSON an SSE reader would choke on.
        replay = await client.get(f"{RESPONSES}/{queued.id}", params={"stream": "true"})
        assert replay.status_code == 400 and replay.json()["error"]["param"] == "stream"
        totals = await flushed_totals(services)
        assert sum(s.counts.requests for s in totals) == 1
        # A finished background response continues like any other; a running one cannot.
        follow = await api.responses.create(model="small-model", input="Again.", previous_response_id=queued.id)
        assert follow.status == "completed"
        assert [m["content"] for m in small.requests[-1].messages][:2] == ["Say hello.", "Hello, world"]
        running = await api.responses.create(model="small-model", input="x", background=True)
        with pytest.raises(openai.BadRequestError, match="has not finished yet"):
            await api.responses.create(model="small-model", input="y", previous_response_id=running.id)


async def _is(api: openai.AsyncOpenAI, response_id: str, expected: str) -> bool:
    return (await api.responses.retrieve(response_id)).status == expected


async def test_a_cancel_on_another_replica_stops_the_run(
    make_app: AppFactory, background_config: GatewayConfig
) -> None:
    slow = ScriptedEngine(["x"] * 100, model="small-model", delay_s=0.05)  # five seconds
    async with make_app(background_config, small=slow) as (one, _), make_app(background_config) as (two, _):
        queued = (await one.post(RESPONSES, json={"model": "small-model", "input": "go", "background": True})).json()
        await until(lambda: _started(slow))
        cancelled = await sdk(two).responses.cancel(queued["id"])
        assert cancelled.status == "cancelled"
        # The replica running it sees the cancel within a poll and stops generating.
        await until(lambda: _closed(slow), within_s=2.0)
        await asyncio.sleep(0.3)
        assert await status(one, queued["id"]) == "cancelled" == await status(two, queued["id"])
        # Cancelling again, or an ended response, changes nothing.
        assert (await two.post(f"{RESPONSES}/{queued['id']}/cancel")).json()["status"] == "cancelled"


async def _started(engine: ScriptedEngine) -> bool:
    return bool(engine.requests)


async def _closed(engine: ScriptedEngine) -> bool:
    return engine.closed > 0


async def test_cancel_answers_for_ended_foreground_and_unknown_responses(
    make_app: AppFactory, background_config: GatewayConfig
) -> None:
    async with make_app(background_config) as (client, _):
        api = sdk(client)
        foreground = await api.responses.create(model="small-model", input="hi")
        with pytest.raises(openai.BadRequestError, match="background: true"):
            await api.responses.cancel(foreground.id)
        with pytest.raises(openai.NotFoundError):
            await api.responses.cancel("resp_nothing")
        background = await api.responses.create(model="small-model", input="hi", background=True)
        await until(lambda: _is(api, background.id, "completed"))
        assert (await api.responses.cancel(background.id)).status == "completed"


async def test_a_failure_in_the_run_is_a_failed_response(
    make_app: AppFactory, background_config: GatewayConfig
) -> None:
    broken = ScriptedEngine(model="small-model", fail_before=UpstreamError("small-model failed", code="upstream_error"))
    async with make_app(background_config, small=broken) as (client, _):
        api = sdk(client)
        queued = await api.responses.create(model="small-model", input="hi", background=True)
        await until(lambda: _is(api, queued.id, "failed"))
        failed = await api.responses.retrieve(queued.id)
        assert failed.error is not None and failed.error.code == "upstream_error"
        # Refused before it is queued: an unknown model is the client's 404 at once.
        with pytest.raises(openai.NotFoundError):
            await api.responses.create(model="no-such-model", input="hi", background=True)


async def test_a_run_whose_replica_stopped_reads_as_failed(
    make_app: AppFactory, background_config: GatewayConfig
) -> None:
    slow = ScriptedEngine(["x"] * 100, model="small-model", delay_s=0.05)
    async with make_app(background_config) as (other, services):
        async with make_app(background_config, small=slow) as (one, _):
            queued = (
                await one.post(RESPONSES, json={"model": "small-model", "input": "go", "background": True})
            ).json()
            await until(lambda: _started(slow))
        # The replica stopped (an orderly stop): it ended the run as failed on its way out.
        stopped = (await other.get(f"{RESPONSES}/{queued['id']}")).json()
        assert stopped["status"] == "failed" and "create it again" in stopped["error"]["message"]

        # A replica that died leaves its run queued: the lease lapses, and a GET says failed.
        assert services.store is not None
        request = ResponsesRequest.model_validate({"model": "small-model", "input": "lost", "background": True})
        shell = ResponseShell(
            id=f"resp_{uuid.uuid4().hex}", model="small-model", request=request, store=True, background=True
        )
        await services.store.responses.start_background(
            "default", StoredResponse(shell.build([], status="queued"), []), 0.2
        )
        assert await status(other, shell.id) == "queued"
        await asyncio.sleep(0.3)
        lost = (await other.get(f"{RESPONSES}/{shell.id}")).json()
        assert lost["status"] == "failed" and "stopped" in lost["error"]["message"]
        assert await status(other, shell.id) == "failed"


async def test_background_needs_redis_and_a_refusal_is_counted(
    make_app: AppFactory, fake_upstream: FakeOpenAIUpstream
) -> None:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    async with make_app(gateway_config(None, fake_upstream.base_url), metric_readers=[reader]) as (client, _):
        answer = await client.post(RESPONSES, json={"model": "small-model", "input": "x", "background": True})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "background"
    assert [model for model, _ in request_counts(reader)] == ["small-model"]


async def test_a_rate_limited_background_request_is_a_429_not_a_failed_response(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> None:
    small = ScriptedEngine(model="small-model")
    async with make_app(auth_config(redis_server.url, fake_upstream.base_url), small=small) as (client, _):
        created = await client.post("/admin/keys", json={"name": "one-a-minute", "rpm_limit": 1}, headers=ADMIN)
        headers = {"authorization": f"Bearer {created.json()['key']}"}
        body = {"model": "small-model", "input": "hi", "background": True}
        queued = await client.post(RESPONSES, json=body, headers=headers)
        assert queued.status_code == 200 and queued.json()["status"] == "queued"
        assert queued.headers["x-ratelimit-remaining-requests"] == "0"  # the queued answer says so
        limited = await client.post(RESPONSES, json=body, headers=headers)
        # Refused at once, as OpenAI refuses it: no response is queued to fail later.
        assert limited.status_code == 429 and limited.json()["error"]["type"] == "rate_limit_error"
        await until(lambda: _done(client, queued.json()["id"], headers))
        assert len(small.requests) == 1


async def _done(client: httpx.AsyncClient, response_id: str, headers: dict[str, str]) -> bool:
    answer = await client.get(f"{RESPONSES}/{response_id}", headers=headers)
    return bool(answer.json()["status"] == "completed")
