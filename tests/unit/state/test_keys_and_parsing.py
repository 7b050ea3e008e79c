"""Pure helpers of the shared state: key layout, key format, headers, URLs, config."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.state import (
    KeySpace,
    RateDecision,
    StateConfig,
    build_client,
    format_api_key,
    parse_api_key,
    parse_bearer,
    redact_url,
    verify_admin,
)
from gateway.state.errors import describe_error
from gateway.state.keys import hash_tag

KEY_ID = "0123456789abcdef"
SECRET = "A" * 20 + "b-_" + "9" * 20  # 43 url-safe characters


def test_key_layout_and_hash_tags() -> None:
    keys = KeySpace()
    assert keys.api_key_record(KEY_ID) == "slm:{key:0123456789abcdef}:rec"
    assert keys.rate_limit(KEY_ID) == "slm:{key:0123456789abcdef}:rl"
    assert keys.key_usage(KEY_ID) == "slm:{key:0123456789abcdef}:usage"
    assert keys.tenant_usage("acme") == "slm:{tenant:acme}:usage"
    assert keys.api_key_index() == "slm:keys"
    # The sample's sorted set, and the list of earlier versions (never the same key: WRONGTYPE).
    assert keys.captured_conversations() == "slm:capture:conversations"
    assert keys.legacy_captured_conversations() == "slm:capture"
    digest = "ab" * 32
    assert keys.cache_entry(digest) == f"slm:{{cache}}:e:{digest}"
    assert keys.cache_entry(digest).startswith(keys.cache_entry_prefix())
    # Keys one script touches together share a slot.
    assert hash_tag(keys.cache_entry(digest)) == hash_tag(keys.cache_index()) == "cache"
    usage = keys.key_usage(KEY_ID)
    assert hash_tag(KeySpace.ledger_marker(usage)) == hash_tag(usage) == f"key:{KEY_ID}"
    assert KeySpace("tenant-a.prod").rate_limit(KEY_ID).startswith("tenant-a.prod:{key:")


@pytest.mark.parametrize("key", ["plain", "a{}b", "a{", "x}y{"])
def test_hash_tag_follows_the_cluster_rule(key: str) -> None:
    assert hash_tag(key) is None


@pytest.mark.parametrize("prefix", ["", "has space", "a:b", "{x}", "x" * 33])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError):
        KeySpace(prefix)
    with pytest.raises(ValidationError):
        StateConfig(prefix=prefix)


@pytest.mark.parametrize("bad", ["a}b", "a{b", "", "x" * 129, "white space"])
def test_ids_cannot_break_hash_tags(bad: str) -> None:
    with pytest.raises(ValueError):
        KeySpace().rate_limit(bad)
    with pytest.raises(ValueError):
        KeySpace().tenant_usage(bad)


def test_api_key_format_round_trips() -> None:
    plaintext = format_api_key(KEY_ID, SECRET)
    assert plaintext.startswith("sk-slm-0123456789abcdef-")
    assert parse_api_key(plaintext) == (KEY_ID, SECRET)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "sk-slm-",
        f"sk-xyz-{KEY_ID}-{SECRET}",
        f"sk-slm-{KEY_ID.upper()}-{SECRET}",
        f"sk-slm-{KEY_ID}-{SECRET[:-1]}",
        f"sk-slm-{KEY_ID}-{SECRET}x",
        f"sk-slm-{KEY_ID}_{SECRET}",
        f"sk-slm-{KEY_ID}-{SECRET[:-1]}!",
        f" sk-slm-{KEY_ID}-{SECRET}",
        "x" * 10_000,
    ],
)
def test_malformed_keys_do_not_parse(bad: str) -> None:
    assert parse_api_key(bad) is None


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer   abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_bearer(header: str | None, token: str | None) -> None:
    assert parse_bearer(header) == token


def test_verify_admin() -> None:
    assert verify_admin("s3cret", "s3cret")
    assert not verify_admin("s3cre", "s3cret")
    assert not verify_admin(None, "s3cret")
    # No admin key configured: nobody is admin, not even with an empty key.
    assert not verify_admin("", "")
    assert not verify_admin("anything", None)


def test_rate_decision_headers() -> None:
    denied = RateDecision(allowed=False, retry_after_s=11.2, remaining_requests=0, limit_requests=5, limited_by="rpm")
    assert denied.headers() == {
        "x-ratelimit-limit-requests": "5",
        "x-ratelimit-remaining-requests": "0",
        "Retry-After": "12",
    }
    allowed = RateDecision(allowed=True, remaining_tokens=90, limit_tokens=100)
    assert allowed.headers() == {"x-ratelimit-limit-tokens": "100", "x-ratelimit-remaining-tokens": "90"}
    assert RateDecision(allowed=True).headers() == {}


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("rediss://:hunter2@cache.example:6380/0", "rediss://:***@cache.example:6380/0"),
        ("redis://user:hunter2@h:1/2", "redis://user:***@h:1/2"),
        ("unix:///run/redis.sock?db=1&password=hunter2", "unix:///run/redis.sock?db=1&password=***"),
    ],
)
def test_redact_url(url: str, safe: str) -> None:
    assert redact_url(url) == safe
    assert "hunter2" not in redact_url(url)


def test_describe_error_hides_url_credentials() -> None:
    text = describe_error(ConnectionError("cannot reach redis://:hunter2@10.0.0.1:6379"))
    assert text.startswith("ConnectionError: ")
    assert "hunter2" not in text


async def test_build_client_options_without_connecting() -> None:
    tls = build_client("rediss://:pw@cache.example:6380/2", op_timeout_s=0.25, connect_timeout_s=0.3)
    kwargs = tls.connection_pool.connection_kwargs
    assert tls.connection_pool.connection_class.__name__ == "SSLConnection"
    assert kwargs["password"] == "pw"
    assert kwargs["db"] == 2
    assert kwargs["socket_timeout"] == 0.25
    assert kwargs["socket_connect_timeout"] == 0.3
    assert kwargs["retry"].get_retries() == 1
    unix = build_client("unix:///tmp/x.sock?db=1")
    assert unix.connection_pool.connection_class.__name__ == "UnixDomainSocketConnection"
    await tls.aclose()
    await unix.aclose()
    with pytest.raises(ValueError):
        build_client("http://127.0.0.1:6379")


def test_state_config_is_strict_and_frozen() -> None:
    config = StateConfig.model_validate(
        {"prefix": "slm", "auth": {"enabled": True}, "cache": {"enabled": True, "ttl_s": 5}}
    )
    assert config.auth.enabled and config.cache.enabled
    assert config.auth.admin_key_env == "SLM_ROUTER_ADMIN_KEY"
    assert config.rate_limits.fail_open_when_redis_down is True
    with pytest.raises(ValidationError):
        StateConfig.model_validate({"auth": {"enabeld": True}})
    with pytest.raises(ValidationError):
        config.prefix = "other"  # type: ignore[misc]


def test_estimate_tokens() -> None:
    from gateway.state import estimate_tokens

    request = {
        "messages": [
            {"role": "system", "content": "x" * 40},
            {"role": "user", "content": [{"type": "text", "text": "y" * 41}]},
        ],
        "max_tokens": 100,
    }
    assert estimate_tokens(request, default_max_tokens=256) == 10 + 11 + 8 + 100
    assert estimate_tokens({**request, "max_completion_tokens": 7}, 256) == 29 + 7
    assert estimate_tokens({"messages": []}, 256) == 256
    assert estimate_tokens({"messages": "junk", "max_tokens": "junk"}, 16) == 16
