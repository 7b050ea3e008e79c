"""Streamed background responses (``background`` and ``stream``) over a real Redis and two
replicas: the creator's stream, a stream read again or resumed from a sequence number on any
replica, a creator that leaves, cancels, failures, and a run whose replica died."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from gateway.config import GatewayConfig
from gateway.errors import UpstreamError
from gateway.protocol.responses import ResponsesRequest
from gateway.serving.background_stream import EventPublisher
from gateway.serving.responses_output import ResponseShell, queued_events
from gateway.serving.responses_results import ResponsesStream
from gateway.state import StoredResponse
from tests.fakes.engines import ScriptedEngine
from tests.integration.conftest import AppFactory, flushed_totals, sdk
from tests.integration.test_background_responses import until

RESPONSES = "/v1/responses"
BODY = {"model": "small-model", "input": "Say hello.", "background": True, "stream": True}


def parse(body: bytes) -> list[dict[str, Any]]:
    """The events of an SSE body, in order."""
    return [json.loads(line[6:]) for line in body.decode().splitlines() if line.startswith("data: ")]


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


async def read_stream(client: httpx.AsyncClient, response_id: str, **query: Any) -> list[dict[str, Any]]:
    answer = await client.get(f"{RESPONSES}/{response_id}", params={"stream": "true", **query})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/event-stream")
    return parse(answer.content)


async def test_the_creator_streams_the_whole_response_and_anyone_can_read_it_again(
    make_app: AppFactory, background_config: GatewayConfig
) -> None:
    async with make_app(background_config) as (client, services), make_app(background_config) as (other, _):
        api = sdk(client)
        stream = await api.responses.create(model="small-model", input="Say hello.", background=True, stream=True)
        created = [event async for event in stream]
        assert [event.sequence_number for event in created] == list(range(len(created)))
        deltas = [event.delta for event in created if event.type == "response.output_text.delta"]
        assert deltas == ["Hello", ",", " world"]
        assert [event.type for event in created] == [
            "response.created",
            "response.queued",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            *["response.output_text.delta"] * 3,
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
        first, last = created[0], created[-1]
        assert first.type == "response.created" and first.response.status == "queued" and first.response.background
        assert last.type == "response.completed" and last.response.output_text == "Hello, world"
        response_id = last.response.id
        # Kept like any background response, and accounted once.
        stored = await api.responses.retrieve(response_id)
        assert stored.status == "completed" and stored.output_text == "Hello, world" and stored.background
        assert sum(s.counts.requests for s in await flushed_totals(services)) == 1
        # Read again on another replica: the same events; from after a sequence number: the rest.
        again = await read_stream(other, response_id)
        assert again == [event.model_dump(mode="json", exclude_unset=True) for event in created]
        assert await read_stream(other, response_id, starting_after=6) == again[7:]
        assert await read_stream(other, response_id, starting_after=len(again) - 1) == []
        # The SDK's resuming helper replays from the start and skips what was seen.
        async with sdk(other).responses.stream(response_id=response_id, starting_after=6) as resumed:
            assert [event.sequence_number async for event in resumed] == list(range(7, len(again)))
            assert (await resumed.get_final_response()).output_text == "Hello, world"


async def test_a_creator_that_leaves_does_not_stop_the_run_and_resumes_where_it_left(
    make_app: AppFactory, background_config: GatewayConfig
) -> None:
    slow = ScriptedEngine(["x"] * 10, model="small-model", delay_s=0.05)
    async with make_app(background_config, small=slow) as (client, services), make_app(background_config) as (other, _):
        assert services.responses is not None
        result = await services.responses.create(json.dumps(BODY).encode(), {})
        assert isinstance(result, ResponsesStream)
        seen = parse(b"".join([await anext(result.events) for _ in range(4)]))
        await _close(result.events)  # the client left after the run's first event
        response_id = seen[0]["response"]["id"]
        # Another replica follows the run live from the log, from where the creator left; this
        # one (where it runs) follows it in memory: the same events.
        after = seen[-1]["sequence_number"]
        rest, here = await asyncio.gather(
            read_stream(other, response_id, starting_after=after),
            read_stream(client, response_id, starting_after=after),
        )
        assert here == rest
        assert rest[-1]["type"] == "response.completed"
        assert rest[-1]["response"]["output"][0]["content"][0]["text"] == "x" * 10
        whole = seen + rest
        assert [event["sequence_number"] for event in whole] == list(range(len(whole)))
        assert kinds(whole).count("response.output_text.delta") == 10
        assert slow.closed == 1 and len(slow.requests) == 1  # one generation, run to its end
        assert (await sdk(client).responses.retrieve(response_id)).status == "completed"


async def _close(events: AsyncIterator[bytes]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


async def test_a_cancel_ends_every_reader_s_stream(make_app: AppFactory, background_config: GatewayConfig) -> None:
    slow = ScriptedEngine(["x"] * 100, model="small-model", delay_s=0.05)  # five seconds
    async with make_app(background_config, small=slow) as (_, services), make_app(background_config) as (other, _):
        assert services.responses is not None
        result = await services.responses.create(json.dumps(BODY).encode(), {})
        assert isinstance(result, ResponsesStream)
        events: list[dict[str, Any]] = []

        async def read_until_it_ends() -> None:
            async for frame in result.events:
                events.extend(parse(frame))

        reader = asyncio.ensure_future(read_until_it_ends())
        await until(lambda: _has_delta(events))
        response_id = events[0]["response"]["id"]
        cancelled = await sdk(other).responses.cancel(response_id)
        assert cancelled.status == "cancelled"
        await asyncio.wait_for(reader, timeout=3.0)
        # The stream ends with what was sent before the cancel: no made-up completion.
        assert kinds(events)[-1] == "response.output_text.delta"
        assert 1 <= kinds(events).count("response.output_text.delta") < 100
        assert (await other.get(f"{RESPONSES}/{response_id}")).json()["status"] == "cancelled"
        # A reader that comes later gets the same events (and any the run sent while it stopped).
        later = await read_stream(other, response_id)
        assert later[: len(events)] == events and kinds(later)[-1] == "response.output_text.delta"


async def _has_delta(events: list[dict[str, Any]]) -> bool:
    return "response.output_text.delta" in kinds(events)


async def test_failures_before_and_during_the_stream_end_it_failed(
    make_app: AppFactory, background_config: GatewayConfig
) -> None:
    down = UpstreamError("small-model failed", code="upstream_error")
    refused = ScriptedEngine(model="small-model", fail_before=down)
    async with make_app(background_config, small=refused) as (client, _):
        events = parse((await client.post(RESPONSES, json=BODY)).content)
        assert kinds(events) == ["response.created", "response.queued", "error", "response.failed"]
        assert events[2]["code"] == "upstream_error"
        assert events[-1]["response"]["status"] == "failed"
        stored = (await client.get(f"{RESPONSES}/{events[0]['response']['id']}")).json()
        assert stored["status"] == "failed" and stored["error"]["code"] == "upstream_error"
    crashing = ScriptedEngine(["a", "b", "c"], model="small-model", fail_after=1)
    async with make_app(background_config, small=crashing) as (client, _):
        events = parse((await client.post(RESPONSES, json=BODY)).content)
        assert kinds(events)[-2:] == ["error", "response.failed"] and "response.output_text.delta" in kinds(events)
        assert [event["sequence_number"] for event in events] == list(range(len(events)))
        stored = (await client.get(f"{RESPONSES}/{events[0]['response']['id']}")).json()
        assert stored["status"] == "failed"


async def test_a_stream_whose_replica_died_ends_failed(make_app: AppFactory, background_config: GatewayConfig) -> None:
    async with make_app(background_config) as (client, services):
        assert services.store is not None
        # A run whose replica died after its first events: the lease lapses and nothing more comes.
        request = ResponsesRequest.model_validate(BODY)
        shell = ResponseShell(id=f"resp_{uuid.uuid4().hex}", model="small-model", request=request, store=True)
        queued = {**shell.build([], status="queued"), "background": True}
        await EventPublisher(services.store.response_events, "default", shell.id).publish(
            queued_events(queued), strict=True
        )
        await services.store.responses.start_background("default", StoredResponse(queued, []), 0.2)
        events = await asyncio.wait_for(read_stream(client, shell.id), timeout=5.0)
        assert kinds(events) == ["response.created", "response.queued", "response.failed"]
        assert events[-1]["sequence_number"] == 2 and "stopped" in events[-1]["response"]["error"]["message"]


async def test_only_streamed_background_responses_stream(
    make_app: AppFactory, background_config: GatewayConfig
) -> None:
    async with make_app(background_config) as (client, _):
        api = sdk(client)
        foreground = await api.responses.create(model="small-model", input="hi")
        polled = await api.responses.create(model="small-model", input="hi", background=True)
        for response_id in (foreground.id, polled.id):
            answer = await client.get(f"{RESPONSES}/{response_id}", params={"stream": "true"})
            assert answer.status_code == 400 and answer.json()["error"]["param"] == "stream"
        streamed = [event async for event in await api.responses.create(**BODY)]
        for bad in ("x", "-2", "1.5"):
            answer = await client.get(
                f"{RESPONSES}/{streamed[0].response.id}", params={"stream": "true", "starting_after": bad}
            )
            assert answer.status_code == 400 and answer.json()["error"]["param"] == "starting_after"
        with pytest.raises(openai.NotFoundError):
            await api.responses.retrieve("resp_nothing", stream=True)
        # Another tenant cannot read it.
        answer = await client.get(
            f"{RESPONSES}/{streamed[0].response.id}", params={"stream": "true"}, headers={"x-slm-router-tenant": "b"}
        )
        assert answer.status_code == 404
