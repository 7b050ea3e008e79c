"""``/v1/conversations`` over a real Redis, through the official SDK: items created, listed page
by page, read, added and deleted; tenants apart; and responses created with ``conversation``,
which read its items as their history and add their own (foreground, streamed and in the
background), without paying for a turn the conversation could not hold."""

from __future__ import annotations

import uuid
from typing import Any

import openai
import pytest

from gateway.config import GatewayConfig
from gateway.errors import UpstreamError
from gateway.redis_server import EmbeddedRedis
from tests.fakes.engines import ScriptedEngine
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.integration.conftest import AppFactory, gateway_config, sdk
from tests.integration.test_background_responses import until


@pytest.fixture()
def config(redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream) -> GatewayConfig:
    return gateway_config(redis_server.url, fake_upstream.base_url, state={"prefix": f"cv{uuid.uuid4().hex[:6]}"})


def texts(items: Any) -> list[tuple[str, str]]:
    """(role, text) of each message item of a page."""
    return [(item.role, item.content[0].text) for item in items.data if item.type == "message"]


async def test_a_conversation_and_its_items_through_the_sdk(make_app: AppFactory, config: GatewayConfig) -> None:
    async with make_app(config) as (client, _):
        api = sdk(client)
        created = await api.conversations.create(
            items=[{"type": "message", "role": "user", "content": f"line {n}"} for n in range(3)],
            metadata={"topic": "demo"},
        )
        assert created.id.startswith("conv_") and created.metadata == {"topic": "demo"}
        assert (await api.conversations.retrieve(created.id)).created_at == created.created_at
        # Newest first by default; pages follow "after".
        newest = await api.conversations.items.list(created.id, limit=2)
        assert texts(newest) == [("user", "line 2"), ("user", "line 1")] and newest.has_more
        rest = await api.conversations.items.list(created.id, limit=2, after=newest.data[-1].id)
        assert texts(rest) == [("user", "line 0")] and not rest.has_more
        oldest = await api.conversations.items.list(created.id, order="asc")
        assert texts(oldest) == [("user", "line 0"), ("user", "line 1"), ("user", "line 2")]
        added = await api.conversations.items.create(
            created.id, items=[{"type": "message", "role": "assistant", "content": "noted"}]
        )
        assert added.data[0].id.startswith("msg_")
        one = await api.conversations.items.retrieve(added.data[0].id, conversation_id=created.id)
        assert one.type == "message" and one.content[0].text == "noted"
        gone = await api.conversations.items.delete(oldest.data[0].id, conversation_id=created.id)
        assert gone.id == created.id
        after = await api.conversations.items.list(created.id, order="asc")
        assert [text for _, text in texts(after)] == ["line 1", "line 2", "noted"]
        updated = await api.conversations.update(created.id, metadata={"topic": "changed"})
        assert updated.metadata == {"topic": "changed"}
        # Another tenant sees nothing of it.
        other = sdk(client, **{"x-slm-router-tenant": "other"})
        with pytest.raises(openai.NotFoundError):
            await other.conversations.retrieve(created.id)
        with pytest.raises(openai.NotFoundError):
            await other.conversations.items.list(created.id)
        deleted = await api.conversations.delete(created.id)
        assert deleted.deleted and deleted.id == created.id
        with pytest.raises(openai.NotFoundError):
            await api.conversations.retrieve(created.id)
        with pytest.raises(openai.NotFoundError):
            await api.conversations.delete(created.id)


async def test_bad_requests_name_the_field(make_app: AppFactory, config: GatewayConfig) -> None:
    async with make_app(config) as (client, _):
        conversation = (await client.post("/v1/conversations", json={})).json()
        assert conversation["object"] == "conversation" and conversation["metadata"] == {}
        path = f"/v1/conversations/{conversation['id']}"
        for url, body, param in [
            ("/v1/conversations", {"items": [{"type": "message", "role": "user", "content": "x"}] * 21}, "items"),
            ("/v1/conversations", {"items": [{"type": "reasoning", "summary": []}]}, "items"),
            ("/v1/conversations", {"metadata": {str(n): "v" for n in range(17)}}, "metadata"),
            (path, {}, "metadata"),
            (path + "/items", {"items": []}, "items"),
        ]:
            answer = await client.post(url, json=body)
            assert answer.status_code == 400, (url, body, answer.text)
            assert answer.json()["error"]["param"] == param
        for query, param in [({"limit": "0"}, "limit"), ({"order": "up"}, "order")]:
            answer = await client.get(path + "/items", params=query)
            assert answer.status_code == 400 and answer.json()["error"]["param"] == param
        one = {"items": [{"type": "message", "role": "user", "content": "x"}]}
        for missing in ("conv_nothing", "{x}"):
            assert (await client.get(f"/v1/conversations/{missing}")).status_code == 404
            added = await client.post(f"/v1/conversations/{missing}/items", json=one)
            assert added.status_code == 404 and added.json()["error"]["param"] == "conversation_id"
        assert (await client.get(path + "/items/msg_nothing")).status_code == 404


async def test_responses_read_the_conversation_and_add_their_turns(make_app: AppFactory, config: GatewayConfig) -> None:
    small = ScriptedEngine(["Hello", ",", " Ada"], model="small-model")
    async with make_app(config, small=small) as (client, _):
        api = sdk(client)
        conversation = await api.conversations.create(
            items=[{"type": "message", "role": "user", "content": "My name is Ada."}]
        )
        first = await api.responses.create(
            model="small-model", input="What is my name?", conversation=conversation.id, instructions="Be brief."
        )
        assert first.output_text == "Hello, Ada" and first.conversation is not None
        assert first.conversation.id == conversation.id
        assert [m["content"] for m in small.requests[-1].messages] == [
            "Be brief.",
            "My name is Ada.",
            "What is my name?",
        ]
        # The answer and the input were added; a streamed response goes on from them.
        async with api.responses.stream(model="small-model", input="Again?", conversation={"id": conversation.id}) as s:
            streamed = await s.get_final_response()
        assert streamed.output_text == "Hello, Ada"
        sent = [(m["role"], m["content"]) for m in small.requests[-1].messages]
        assert sent == [
            ("user", "My name is Ada."),
            ("user", "What is my name?"),
            ("assistant", "Hello, Ada"),
            ("user", "Again?"),
        ]
        items = await api.conversations.items.list(conversation.id, order="asc")
        assert [(role, text) for role, text in texts(items)] == [*sent, ("assistant", "Hello, Ada")]
        # In the background too, once the run has its answer.
        queued = await api.responses.create(
            model="small-model", input="Once more.", conversation=conversation.id, background=True
        )

        async def seven_messages() -> bool:
            return len(texts(await api.conversations.items.list(conversation.id))) == 7

        await until(seven_messages)
        assert (await api.responses.retrieve(queued.id)).status == "completed"


async def test_refusals_before_anything_is_paid_for(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> None:
    config = gateway_config(
        redis_server.url,
        fake_upstream.base_url,
        state={"prefix": f"cv{uuid.uuid4().hex[:6]}", "conversations": {"max_items": 3}},
    )
    failing = ScriptedEngine(model="small-model", fail_before=UpstreamError("small-model failed"))
    async with make_app(config, small=failing) as (client, _):
        api = sdk(client)
        conversation = await api.conversations.create(
            items=[
                {"type": "message", "role": "user", "content": "one"},
                {"type": "message", "role": "user", "content": "two"},
            ]
        )
        # This turn would take it past 3 items: refused before the model is asked.
        with pytest.raises(openai.BadRequestError) as full:
            await api.responses.create(model="small-model", input="three", conversation=conversation.id)
        assert full.value.param == "conversation" and not failing.requests
        with pytest.raises(openai.BadRequestError) as both:
            await api.responses.create(
                model="small-model", input="x", conversation=conversation.id, previous_response_id="resp_1"
            )
        assert both.value.param == "conversation"
        with pytest.raises(openai.NotFoundError) as unknown:
            await api.responses.create(model="small-model", input="x", conversation="conv_nothing")
        assert unknown.value.param == "conversation"
        with pytest.raises(openai.BadRequestError):
            await api.conversations.items.create(
                conversation.id,
                items=[
                    {"type": "message", "role": "user", "content": "a"},
                    {"type": "message", "role": "user", "content": "b"},
                ],
            )
        assert len((await api.conversations.items.list(conversation.id)).data) == 2
        # A response that fails adds nothing to its conversation.
        empty = await api.conversations.create()
        with pytest.raises(openai.APIStatusError):
            await api.responses.create(model="small-model", input="hello?", conversation=empty.id)
        assert failing.requests and (await api.conversations.items.list(empty.id)).data == []
    # Without Redis there are no conversations.
    async with make_app(gateway_config(None, fake_upstream.base_url)) as (client, _):
        answer = await client.post("/v1/conversations", json={})
        assert answer.status_code == 400
        answer = await client.post(
            "/v1/responses", json={"model": "small-model", "input": "x", "conversation": "conv_1"}
        )
        assert answer.status_code == 400 and answer.json()["error"]["param"] == "conversation"
