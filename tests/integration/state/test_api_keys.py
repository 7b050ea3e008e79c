"""API keys in a real Redis: lifecycle, revocation across replicas, no secret leaks, Redis down."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import ServiceUnavailableError
from gateway.redis_server import EmbeddedRedis
from gateway.state import StateUnavailableError, parse_api_key
from tests.integration.state.conftest import StoreFactory, dead_redis_url


async def test_key_lifecycle(make_store: StoreFactory) -> None:
    store = make_store()
    plaintext, record = await store.api_keys.create(
        "ci bot", "acme", rpm_limit=60, tpm_limit=10_000, budget_usd=12.5, routing_defaults={"tier": "small"}
    )
    parsed = parse_api_key(plaintext)
    assert parsed is not None and parsed[0] == record.key_id
    assert (record.name, record.tenant, record.rpm_limit, record.tpm_limit) == ("ci bot", "acme", 60, 10_000)
    assert record.budget_nusd == 12_500_000_000

    verified = await store.api_keys.verify(plaintext)
    assert verified == record

    listed = await store.api_keys.list()
    assert [r.key_id for r in listed] == [record.key_id]
    assert listed[0].routing_defaults == {"tier": "small"}
    secret = parsed[1]
    assert secret not in repr(listed) and secret not in listed[0].model_dump_json()
    raw = await store.client.hgetall(store.keys.api_key_record(record.key_id))
    assert all(secret.encode() not in value for value in raw.values()), "the secret itself is never stored"

    assert await store.api_keys.revoke(record.key_id)
    assert await store.api_keys.verify(plaintext) is None
    listed = await store.api_keys.list()
    assert listed[0].revoked
    assert await store.api_keys.revoke("ffffffffffffffff") is False


async def test_wrong_or_malformed_secrets_fail(make_store: StoreFactory) -> None:
    store = make_store()
    plaintext, record = await store.api_keys.create("k", "acme")
    assert await store.api_keys.verify(plaintext) is not None  # now cached on this replica
    last = plaintext[-1]
    wrong = plaintext[:-1] + ("A" if last != "A" else "B")
    assert await store.api_keys.verify(wrong) is None
    assert await store.api_keys.verify(plaintext[:-1]) is None
    assert await store.api_keys.verify("sk-slm-0000000000000000-" + "x" * 43) is None
    assert await store.api_keys.verify("") is None
    # A key made with another pepper (another deployment) does not verify here.
    other = make_store(prefix=store.config.prefix, environ={"SLM_ROUTER_KEY_PEPPER": "other"})
    assert await other.api_keys.verify(plaintext) is None
    assert await store.api_keys.verify(plaintext) == record


async def test_list_filters_by_tenant(make_store: StoreFactory) -> None:
    store = make_store()
    _, a = await store.api_keys.create("a", "acme")
    _, b = await store.api_keys.create("b", "globex")
    assert {r.key_id for r in await store.api_keys.list()} == {a.key_id, b.key_id}
    assert [r.key_id for r in await store.api_keys.list(tenant="globex")] == [b.key_id]
    assert await store.api_keys.get(a.key_id) == a
    assert await store.api_keys.get("ffffffffffffffff") is None


async def test_revocation_reaches_other_replicas_within_the_cache_ttl(make_store: StoreFactory) -> None:
    replica_a = make_store(auth={"cache_ttl_s": 0.3})
    replica_b = make_store(auth={"cache_ttl_s": 0.3})
    plaintext, record = await replica_a.api_keys.create("k", "acme")
    assert await replica_b.api_keys.verify(plaintext) == record
    assert await replica_a.api_keys.revoke(record.key_id)
    assert await replica_a.api_keys.verify(plaintext) is None  # at once where it was revoked
    await asyncio.sleep(0.35)
    assert await replica_b.api_keys.verify(plaintext) is None  # within the TTL elsewhere


async def test_no_secret_in_reprs_or_errors(make_store: StoreFactory) -> None:
    store = make_store(environ={"SLM_ROUTER_KEY_PEPPER": "pepper-value"})
    plaintext, record = await store.api_keys.create("k", "acme")
    # By position: the URL-safe secret may itself hold "-".
    secret = plaintext[len("sk-slm-") + 16 + 1 :]
    assert len(secret) == 43
    await store.api_keys.verify(plaintext)
    for text in (repr(record), str(record), repr(store), repr(store.api_keys), repr(store.config)):
        assert secret not in text and "pepper-value" not in text
    down = make_store(dead_redis_url())
    with pytest.raises(StateUnavailableError) as info:
        await down.api_keys.verify(plaintext)
    assert isinstance(info.value, ServiceUnavailableError)
    assert info.value.status_code == 503 and info.value.retry_after
    for text in (str(info.value), repr(info.value), str(info.value.to_openai()), down.health.last_error or ""):
        assert secret not in text and plaintext not in text
    with pytest.raises(StateUnavailableError) as created:
        await down.api_keys.create("k", "acme")
    assert "sk-slm-" not in str(created.value)


@pytest.mark.parametrize("fail_open", [False, True])
async def test_auth_when_redis_goes_down(make_store: StoreFactory, tmp_path: Path, fail_open: bool) -> None:
    """Fail-closed answers 503 once the cache TTL passes; fail-open keeps recently verified keys."""
    with EmbeddedRedis(tmp_path / "redis", persist=False) as server:
        store = make_store(server.url, auth={"cache_ttl_s": 0.05, "fail_open_when_redis_down": fail_open})
        plaintext, record = await store.api_keys.create("k", "acme")
        unknown, _ = await store.api_keys.create("never-seen", "acme")
        assert await store.api_keys.verify(plaintext) == record
    await asyncio.sleep(0.06)  # Redis is stopped and the fresh-cache TTL is over
    if fail_open:
        assert await store.api_keys.verify(plaintext) == record
    else:
        with pytest.raises(StateUnavailableError):
            await store.api_keys.verify(plaintext)
    with pytest.raises(StateUnavailableError):
        await store.api_keys.verify(unknown)  # cannot be checked: 503, never a guess
    assert store.health.degraded
    assert await store.api_keys.verify("sk-slm-garbage") is None  # malformed keys need no Redis


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "", "tenant": "acme"},
        {"name": "k", "tenant": "has space"},
        {"name": "k", "tenant": "a{b}"},
        {"name": "k", "tenant": "acme", "rpm_limit": 0},
        {"name": "k", "tenant": "acme", "tpm_limit": 2.5},
        {"name": "k", "tenant": "acme", "budget_usd": -1.0},
        {"name": "k", "tenant": "acme", "budget_usd": float("inf")},
        {"name": "k", "tenant": "acme", "routing_defaults": {"x": "y" * 20_000}},
    ],
)
async def test_create_validates_arguments(make_store: StoreFactory, kwargs: dict[str, Any]) -> None:
    store = make_store()
    with pytest.raises(ValueError):
        await store.api_keys.create(**kwargs)
    assert await store.api_keys.list() == []
