"""``state.capture``: a sample of admitted conversations, exported for ``slm-router label``.

In-process replicas over the session's real Redis; each test's config has its own key prefix.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from gateway.redis_server import EmbeddedRedis
from router_models.labelling import read_prompts
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.integration.conftest import ADMIN_KEY, AppFactory, gateway_config

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
FIRST = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": [{"type": "text", "text": "What is a monad?"}]},
]
SECOND = [
    {"role": "user", "content": "Name a prime."},
    {"role": "assistant", "content": "7"},
    {"role": "user", "content": "A bigger one?"},
]


def _config(redis_url: str, upstream_url: str, share: float, **capture: Any) -> Any:
    state = {"prefix": f"cap{uuid.uuid4().hex[:8]}", "capture": {"share": share, **capture}}
    return gateway_config(redis_url, upstream_url, state=state)


async def test_admitted_conversations_are_kept_and_export_as_label_input(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream, tmp_path: Path
) -> None:
    async with make_app(_config(redis_server.url, fake_upstream.base_url, 1.0)) as (client, _):
        for messages in (FIRST, SECOND):
            ok = await client.post("/v1/chat/completions", json={"model": "small-model", "messages": messages})
            assert ok.status_code == 200
        # Refused requests are not traffic the router sees: nothing kept.
        bad = await client.post("/v1/chat/completions", json={"model": "small-model", "messages": []})
        assert bad.status_code == 400
        unknown = await client.post("/v1/chat/completions", json={"model": "nope", "messages": SECOND})
        assert unknown.status_code in (400, 404)
        # The Responses API is the same pipeline: its input is kept as chat messages.
        responses = await client.post("/v1/responses", json={"model": "small-model", "input": "Say hi."})
        assert responses.status_code == 200

        assert (await client.get("/admin/capture")).status_code in (401, 403)  # admin only
        exported = await client.get("/admin/capture", headers=ADMIN)
        assert exported.status_code == 200 and exported.headers["cache-control"] == "no-store"
        body = exported.json()
        assert body["kept"] == 3 and body["sampling"] is True
        rows = body["data"]
        assert [row["messages"] for row in rows[1:]] == [SECOND, FIRST]  # newest first, as sent
        assert rows[0]["messages"][-1] == {"role": "user", "content": "Say hi."}
        assert (await client.get("/admin/capture?limit=1", headers=ADMIN)).json()["data"] == rows[:1]

        # What the export holds is what `slm-router label --prompts` reads.
        sample = tmp_path / "sample.jsonl"
        sample.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        items, repeated = read_prompts(sample, need_reference=False)
        assert len(items) == 3 and repeated == 0
        assert items[2].messages == FIRST

        cleared = await client.delete("/admin/capture", headers=ADMIN)
        assert cleared.json() == {"deleted": 3}
        assert (await client.get("/admin/capture", headers=ADMIN)).json()["data"] == []


async def test_off_by_default(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> None:
    async with make_app(_config(redis_server.url, fake_upstream.base_url, 0.0)) as (client, _):
        ok = await client.post("/v1/chat/completions", json={"model": "small-model", "messages": FIRST})
        assert ok.status_code == 200
        body = (await client.get("/admin/capture", headers=ADMIN)).json()
        assert body == {"object": "list", "data": [], "kept": 0, "sampling": False}
        bad = await client.get("/admin/capture?limit=many", headers=ADMIN)
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


async def test_store_false_and_excluded_tenants_are_not_kept(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> None:
    config = _config(redis_server.url, fake_upstream.base_url, 1.0, exclude_tenants=["no-capture"])
    async with make_app(config) as (client, _):
        chat = "/v1/chat/completions"
        opted_out = await client.post(chat, json={"model": "small-model", "messages": FIRST, "store": False})
        assert opted_out.status_code == 200
        responses = await client.post("/v1/responses", json={"model": "small-model", "input": "Hi.", "store": False})
        assert responses.status_code == 200 and responses.json()["store"] is False
        excluded = await client.post(
            chat, json={"model": "small-model", "messages": FIRST}, headers={"x-slm-router-tenant": "no-capture"}
        )
        assert excluded.status_code == 200
        kept = await client.post(chat, json={"model": "small-model", "messages": SECOND, "store": True})
        assert kept.status_code == 200
        body = (await client.get("/admin/capture", headers=ADMIN)).json()
        assert body["kept"] == 1 and [row["messages"] for row in body["data"]] == [SECOND]


async def test_the_tools_offered_are_kept_and_requests_only_one_tier_serves_are_not(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream, tmp_path: Path
) -> None:
    weather = {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "Weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
    legacy = {"name": "time", "parameters": {"type": "object", "properties": {}}}
    forced = {"type": "function", "function": {"name": "weather"}}
    config = _config(redis_server.url, fake_upstream.base_url, 1.0)
    # The small tier makes forced calls (as vLLM tiers do), and calls no tools otherwise.
    async with make_app(config, small_forced_tool_calls=True) as (client, _):
        chat = "/v1/chat/completions"
        # Free tool calling: only the large tier serves it, so no routing decision to label.
        free = {"model": "router", "messages": SECOND, "tools": [weather], "tool_choice": "auto"}
        assert (await client.post(chat, json=free)).status_code == 200
        # A forced call: both tiers serve it, the router decides, and labelling replays the tools.
        call = {"model": "router", "messages": SECOND, "tools": [weather], "tool_choice": forced}
        assert (await client.post(chat, json=call)).status_code == 200
        # Legacy functions are kept as the tools they are served as.
        old_style = {"model": "router", "messages": FIRST, "functions": [legacy], "function_call": {"name": "time"}}
        assert (await client.post(chat, json=old_style)).status_code == 200
        body = (await client.get("/admin/capture", headers=ADMIN)).json()
    assert body["kept"] == 2
    rows = body["data"]
    assert rows[1] == {"messages": SECOND, "tools": [weather], "tool_choice": forced}
    assert rows[0]["tools"] == [{"type": "function", "function": legacy}]
    assert rows[0]["tool_choice"] == {"type": "function", "function": {"name": "time"}}
    sample = tmp_path / "sample.jsonl"
    sample.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    items, _ = read_prompts(sample, need_reference=False)
    assert items[1].tool_options == {"tools": [weather], "tool_choice": forced}
