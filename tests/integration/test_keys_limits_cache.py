"""API keys, rate limits across two replicas, and the response cache, over a real Redis."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from gateway.redis_server import EmbeddedRedis
from gateway.routing import ThresholdPolicy
from tests.fakes.engines import ScriptedEngine
from tests.fakes.openai_upstream import FakeOpenAIUpstream, UpstreamBehaviour
from tests.integration.conftest import ADMIN_KEY, AppFactory, cached_chat, gateway_config
from tests.unit.test_routing_policy import LengthScorer

CHAT = "/v1/chat/completions"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
BODY = {"model": "small-model", "messages": [{"role": "user", "content": "hello"}]}


def auth_config(redis_url: str, upstream: str, **state: object) -> object:
    section = {"prefix": f"k{uuid.uuid4().hex[:8]}", "auth": {"enabled": True, "cache_ttl_s": 0}, **state}
    return gateway_config(redis_url, upstream, state=section)


async def test_key_lifecycle_over_the_admin_api(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> None:
    async with make_app(auth_config(redis_server.url, fake_upstream.base_url)) as (client, _):
        missing = await client.post(CHAT, json=BODY)
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
        wrong = await client.post(CHAT, json=BODY, headers={"authorization": "Bearer sk-slm-0000-nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        assert (await client.post("/admin/keys", json={"name": "a"})).status_code == 403
        bad_admin = await client.post("/admin/keys", json={"name": "a"}, headers={"authorization": "Bearer guess"})
        assert bad_admin.status_code == 403

        created = await client.post("/admin/keys", json={"name": "svc", "tenant": "acme"}, headers=ADMIN)
        assert created.status_code == 201
        key = created.json()["key"]
        key_id = created.json()["key_id"]
        assert key.startswith("sk-slm-")
        ok = await client.post(CHAT, json=BODY, headers={"authorization": f"Bearer {key}"})
        assert ok.status_code == 200
        listing = await client.get("/admin/keys", headers=ADMIN)
        # sk-slm-<16 hex id>-<secret>; the secret itself may hold "-" (URL-safe base64), so it
        # is cut by position, not at the last dash (which flaked on a short tail).
        secret = key[len("sk-slm-") + 16 + 1 :]
        assert len(secret) == 43
        assert key_id in listing.text and key not in listing.text and secret not in listing.text
        assert (await client.get("/v1/models")).status_code == 401
        assert (await client.delete(f"/admin/keys/{key_id}", headers=ADMIN)).json()["revoked"] is True
        revoked = await client.post(CHAT, json=BODY, headers={"authorization": f"Bearer {key}"})
        assert revoked.status_code == 401
        assert (await client.delete("/admin/keys/nope", headers=ADMIN)).status_code == 404
        # Arguments the key store refuses are the admin's 400 naming the field (were 500s).
        for bad, param in (({"name": "x", "tenant": "34/\U00088537\u00f9"}, "tenant"), ({"name": "   "}, "name")):
            refused = await client.post("/admin/keys", json=bad, headers=ADMIN)
            assert (refused.status_code, refused.json()["error"]["param"]) == (400, param), refused.text


async def test_rate_limit_is_shared_by_two_replicas(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> None:
    config = auth_config(redis_server.url, fake_upstream.base_url)
    async with make_app(config) as (one, _), make_app(config) as (two, _):
        created = await one.post("/admin/keys", json={"name": "limited", "rpm_limit": 4}, headers=ADMIN)
        headers = {"authorization": f"Bearer {created.json()['key']}"}
        statuses = []
        for index in range(6):
            response = await (one if index % 2 else two).post(CHAT, json=BODY, headers=headers)
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert float(response.headers["retry-after"]) >= 1
                assert response.json()["error"]["type"] == "rate_limit_error"
        assert statuses.count(200) == 4 and statuses.count(429) == 2


async def test_tokens_per_minute_limit(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> None:
    async with make_app(auth_config(redis_server.url, fake_upstream.base_url)) as (client, _):
        created = await client.post("/admin/keys", json={"name": "tpm", "tpm_limit": 300}, headers=ADMIN)
        headers = {"authorization": f"Bearer {created.json()['key']}"}
        statuses = [(await client.post(CHAT, json=BODY, headers=headers)).status_code for _ in range(12)]
    assert 200 in statuses and 429 in statuses


async def test_cache_hit_is_free_and_marked(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> None:
    engine = ScriptedEngine(model="small-model")
    config = gateway_config(redis_server.url, fake_upstream.base_url, state={"prefix": f"c{uuid.uuid4().hex[:8]}"})
    async with make_app(config, small=engine) as (client, services):
        opt_in = {"x-slm-router-cache": "true"}
        first = await client.post(CHAT, json=BODY, headers=opt_in)
        assert first.headers["x-slm-router-cache"] == "miss"
        second = await client.post(CHAT, json=BODY, headers=opt_in)
        assert second.headers["x-slm-router-cache"] == "hit"
        assert second.json()["choices"] == first.json()["choices"]
        assert second.json()["id"] != first.json()["id"]
        assert second.json()["usage"]["slm_router"]["cost_usd"] == 0.0
        assert len(engine.requests) == 1
        other = await client.post(CHAT, json={**BODY, "temperature": 0.5}, headers=opt_in)
        assert other.headers["x-slm-router-cache"] == "miss"
        no_opt = await client.post(CHAT, json=BODY)
        assert "x-slm-router-cache" not in no_opt.headers
        assert services.ledger is not None
        await services.store.ledger.flush()  # type: ignore[union-attr]
        totals = await services.ledger.totals()
    # Three answered requests in the ledger; the hit cost nothing and is not there.
    assert sum(series.counts.requests for series in totals) == 3


async def test_cache_keys_the_threshold_and_refuses_unsupported_features(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> None:
    config = gateway_config(redis_server.url, fake_upstream.base_url, state={"prefix": f"c{uuid.uuid4().hex[:8]}"})
    reader = InMemoryMetricReader()
    async with make_app(config, scripted_large=True, metric_readers=[reader]) as (client, services):
        # Scores 0.3 for this prompt: threshold 0 sends it to the large tier, 1 to the small one.
        services.chat.set_policy(ThresholdPolicy(["small", "large"], LengthScorer(), [0.5], "small"))
        body = {"model": "router", "messages": [{"role": "user", "content": "x" * 30}], "max_tokens": 2}

        async def ask(payload: dict[str, object], threshold: str | None = None) -> httpx.Response:
            headers = {"x-slm-router-cache": "true"}
            if threshold is not None:
                headers["x-slm-router-threshold"] = threshold
            return await client.post(CHAT, json=payload, headers=headers)

        large = await ask(body, "0")
        assert (large.headers["x-slm-router-cache"], large.json()["model"]) == ("miss", "fake-large")
        small = await ask(body, "1")
        assert (small.headers["x-slm-router-cache"], small.json()["model"]) == ("miss", "small-model")
        again = await ask(body, "0")
        assert (again.headers["x-slm-router-cache"], again.json()["model"]) == ("hit", "fake-large")
        # The body field wins over the header, in the cache key as in routing.
        body_wins = await ask({**body, "router_threshold": 1}, "0")
        assert (body_wins.headers["x-slm-router-cache"], body_wins.json()["model"]) == ("hit", "small-model")
        # A cached plain-text answer exists, but a request for a logit bias must not get it,
        # nor one offering legacy functions (served as tool calling, so keyed by its tools).
        refused = await ask({**body, "logit_bias": {"50256": -100}}, "0")
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == "logit_bias"
        assert refused.json()["error"]["code"] == "unsupported_parameter"
        declined = await ask({**body, "functions": [{"name": "f"}], "function_call": "none"}, "0")
        assert (declined.status_code, declined.headers["x-slm-router-cache"]) == (200, "miss")
        off = await ask({**body, "response_format": {"type": "text"}, "tools": []}, "0")
        assert (off.headers["x-slm-router-cache"], off.json()["model"]) == ("hit", "fake-large")
    # The refusals are counted as failed requests, by cause.
    data = reader.get_metrics_data()
    assert data is not None
    refused = [
        point.value
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "slm_router.requests"
        for point in metric.data.data_points
        if point.attributes.get("error.type") == "unsupported_parameter"
    ]
    assert sum(refused) == 1


async def test_cache_keys_the_response_format(
    make_app: AppFactory,
    redis_server: EmbeddedRedis,
    fake_upstream: FakeOpenAIUpstream,
    upstream_behaviour: UpstreamBehaviour,
) -> None:
    config = gateway_config(redis_server.url, fake_upstream.base_url, state={"prefix": f"f{uuid.uuid4().hex[:8]}"})
    body = {"model": "fake-large", "messages": [{"role": "user", "content": "Three colours, as JSON."}]}
    schema = {"type": "object", "properties": {"colours": {"type": "array", "items": {"type": "string"}}}}
    json_object = {"type": "json_object"}
    json_schema = {"type": "json_schema", "json_schema": {"name": "colours", "schema": schema, "strict": True}}
    async with make_app(config) as (client, _):

        async def ask(response_format: object = None, **changes: object) -> httpx.Response:
            payload = {**body, **changes}
            if response_format is not None:
                payload["response_format"] = response_format
            return await client.post(CHAT, json=payload, headers={"x-slm-router-cache": "true"})

        plain = await ask()
        assert plain.headers["x-slm-router-cache"] == "miss"
        assert plain.json()["choices"][0]["message"]["content"] == "large says: Three colours, as JSON."
        # The plain answer is cached; a JSON request must not get it.
        first = await ask(json_object)
        assert first.headers["x-slm-router-cache"] == "miss"
        assert upstream_behaviour.requests[-1]["response_format"] == json_object
        answer = json.loads(first.json()["choices"][0]["message"]["content"])
        assert answer == {"answer": "large says: Three colours, as JSON."}
        again = await ask(json_object)
        assert again.headers["x-slm-router-cache"] == "hit"
        assert json.loads(again.json()["choices"][0]["message"]["content"]) == answer
        structured = await ask(json_schema)
        assert structured.headers["x-slm-router-cache"] == "miss"
        assert upstream_behaviour.requests[-1]["response_format"] == json_schema
        assert set(json.loads(structured.json()["choices"][0]["message"]["content"])) == {"colours"}
        assert (await ask({"type": "text"})).headers["x-slm-router-cache"] == "hit"  # text is the default
        sent = len(upstream_behaviour.requests)
        # Refused before any upstream call: JSON mode without "json" in the messages, a bad schema.
        no_word = await ask(json_object, messages=[{"role": "user", "content": "Three colours."}])
        assert (no_word.status_code, no_word.json()["error"]["param"]) == (400, "messages")
        bad_schema = {"type": "json_schema", "json_schema": {"name": "c", "schema": {"type": "objekt"}}}
        refused = await ask(bad_schema)
        assert (refused.status_code, refused.json()["error"]["param"]) == (400, "response_format.json_schema.schema")
        assert len(upstream_behaviour.requests) == sent


async def test_cache_keys_logprobs_and_returns_them_on_a_hit(
    make_app: AppFactory,
    redis_server: EmbeddedRedis,
    fake_upstream: FakeOpenAIUpstream,
    upstream_behaviour: UpstreamBehaviour,
) -> None:
    body = {"model": "fake-large", "messages": [{"role": "user", "content": "x y"}]}
    async with cached_chat(make_app, redis_server.url, fake_upstream.base_url, body) as ask:
        plain = await ask()
        assert plain.headers["x-slm-router-cache"] == "miss" and plain.json()["choices"][0]["logprobs"] is None
        # The plain answer has no logprobs to give: a logprobs request misses, then hits with them.
        first = await ask(logprobs=True, top_logprobs=2)
        assert first.headers["x-slm-router-cache"] == "miss"
        content = first.json()["choices"][0]["logprobs"]["content"]
        assert [t["token"] for t in content] == ["large", " says:", " x", " y"]
        assert [alt["token"] for alt in content[0]["top_logprobs"]] == ["large", "alt1"]
        again = await ask(logprobs=True, top_logprobs=2)
        assert again.headers["x-slm-router-cache"] == "hit"
        assert again.json()["choices"][0]["logprobs"] == first.json()["choices"][0]["logprobs"]
        assert (await ask(logprobs=True, top_logprobs=3)).headers["x-slm-router-cache"] == "miss"
        assert (await ask(logprobs=False)).headers["x-slm-router-cache"] == "hit"  # false is the default
        sent = len(upstream_behaviour.requests)
        refused = await ask(top_logprobs=2)
        assert (refused.status_code, refused.json()["error"]["param"]) == (400, "top_logprobs")
        assert len(upstream_behaviour.requests) == sent


def request_counts(reader: InMemoryMetricReader) -> dict[tuple[str, str], int]:
    """``slm_router.requests`` by (gen_ai.request.model, error.type or "ok")."""
    data = reader.get_metrics_data()
    assert data is not None
    counts: dict[tuple[str, str], int] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name != "slm_router.requests":
                    continue
                for point in metric.data.data_points:
                    attributes = point.attributes or {}
                    label = (str(attributes.get("gen_ai.request.model")), str(attributes.get("error.type", "ok")))
                    counts[label] = counts.get(label, 0) + int(point.value)
    return counts


async def test_refused_requests_are_counted_under_bounded_model_labels(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> None:
    reader = InMemoryMetricReader()
    async with make_app(auth_config(redis_server.url, fake_upstream.base_url), metric_readers=[reader]) as (client, _):
        created = await client.post("/admin/keys", json={"name": "svc"}, headers=ADMIN)
        auth = {"authorization": f"Bearer {created.json()['key']}"}
        assert (await client.post(CHAT, json=BODY)).status_code == 401
        assert (await client.post(CHAT, content=b"{not json", headers=auth)).status_code == 400
        assert (await client.post(CHAT, json={**BODY, "temperature": 5}, headers=auth)).status_code == 400
        # Every unknown name is one more label value unless bucketed: 30 here, millions in the wild.
        for index in range(30):
            missing = await client.post(CHAT, json={**BODY, "model": f"gpt-{uuid.uuid4().hex}-{index}"}, headers=auth)
            assert missing.status_code == 404
        routed_form = await client.post(CHAT, json={**BODY, "model": "router-lexical-0.37"}, headers=auth)
        assert routed_form.status_code == 404  # no learned router loaded in this config
        assert (await client.post(CHAT, json=BODY, headers=auth)).status_code == 200
        bad_header = await client.post(CHAT, json=BODY, headers={**auth, "x-slm-router-threshold": "high"})
        assert bad_header.status_code == 400
        limited = await client.post("/admin/keys", json={"name": "one-a-minute", "rpm_limit": 1}, headers=ADMIN)
        one_a_minute = {"authorization": f"Bearer {limited.json()['key']}"}
        statuses = [(await client.post(CHAT, json=BODY, headers=one_a_minute)).status_code for _ in range(2)]
        assert statuses == [200, 429]
    counts = request_counts(reader)
    assert counts == {
        ("other", "missing_api_key"): 1,
        ("other", "InvalidRequestError"): 1,
        ("other", "invalid_value"): 1,
        ("other", "model_not_found"): 30,
        ("router", "model_not_found"): 1,
        ("small-model", "ok"): 2,
        ("small-model", "InvalidRequestError"): 1,
        ("small-model", "rate_limit_exceeded"): 1,
    }


@pytest.mark.parametrize("stream", [False, True])
async def test_tenant_header_without_auth(
    make_app: AppFactory, fake_upstream: FakeOpenAIUpstream, stream: bool
) -> None:
    async with make_app(gateway_config(None, fake_upstream.base_url)) as (client, _):
        response = await client.post(CHAT, json={**BODY, "stream": stream}, headers={"x-slm-router-tenant": "team-a"})
    assert response.status_code == 200


async def test_key_budget_exhaustion_follows_the_budget_policy(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> None:
    import asyncio

    from gateway.routing import ThresholdPolicy
    from tests.unit.test_routing_policy import LengthScorer

    async with make_app(auth_config(redis_server.url, fake_upstream.base_url), scripted_large=True) as (client, svc):
        svc.chat.set_policy(ThresholdPolicy(["small", "large"], LengthScorer(), [0.5], "small"))
        created = await client.post("/admin/keys", json={"name": "b", "budget_usd": 1e-9}, headers=ADMIN)
        headers = {"authorization": f"Bearer {created.json()['key']}"}
        hard = {"model": "router", "messages": [{"role": "user", "content": "x" * 90}]}
        first = await client.post(CHAT, json=hard, headers=headers)
        assert first.headers["x-slm-router-tier"] == "large"  # spends past the tiny budget
        await asyncio.sleep(1.1)  # spend is re-read once a second
        flagged = await client.post(CHAT, json=hard, headers=headers)
        assert flagged.status_code == 200
        assert (flagged.headers["x-slm-router-tier"], flagged.headers["x-slm-router-reason"]) == ("small", "budget")
        named = await client.post(CHAT, json={**hard, "model": "fake-large"}, headers=headers)
        assert named.status_code == 429 and named.json()["error"]["code"] == "budget_exhausted"
        await client.put("/admin/routing", json={"over_budget": "reject"}, headers=ADMIN)
        rejected = await client.post(CHAT, json=hard, headers=headers)
        assert rejected.status_code == 429 and "retry-after" in rejected.headers
