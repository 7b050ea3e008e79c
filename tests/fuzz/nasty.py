"""Hand-written hostile requests, one per known-nasty input, each with an id.

The CI test parametrizes over them and the fuzz script sends them first; the generated
families live in :mod:`tests.fuzz.bodies`.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fuzz.bodies import CHAT, FuzzRequest, dump_json

__all__ = ["nasty_requests"]


def _chat_json(**fields: Any) -> dict[str, Any]:
    return {"model": "router", "messages": [{"role": "user", "content": "hello"}], **fields}


def nasty_requests(max_body_bytes: int) -> list[tuple[str, FuzzRequest]]:
    """Hand-written hostile requests, each with an id (the CI test parametrizes over them)."""
    valid = dump_json(_chat_json())
    json_ct = {"content-type": "application/json"}

    def chat(name: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[str, FuzzRequest]:
        return name, FuzzRequest("POST", CHAT, "nasty", body, json_ct if headers is None else headers)

    def with_field(name: str, raw: str) -> tuple[str, FuzzRequest]:
        return chat(name, valid[:-1] + f", {raw}}}".encode())

    cases = [
        chat("invalid-utf8", b'{"model": "router", "messages": [{"role": "user", "content": "\xff\xfe\xc3"}]}'),
        chat("invalid-utf8-only", b"\xff" * 64),
        chat("utf16-json", json.dumps(_chat_json()).encode("utf-16")),
        chat("bom-prefixed-json", b"\xef\xbb\xbf" + valid),
        chat("lone-surrogate-content", valid.replace(b'"hello"', b'"\\ud800 hi"')),
        chat(
            "lone-surrogate-to-large", valid.replace(b'"hello"', b'"\\ud800 hi"').replace(b'"router"', b'"fake-large"')
        ),
        chat(
            "lone-surrogate-stream-large",
            valid.replace(b'"hello"', b'"\\udbff"').replace(b'"router"', b'"fake-large", "stream": true'),
        ),
        chat("surrogate-pair-emoji", valid.replace(b'"hello"', b'"\\ud83d\\ude00"')),
        chat("lone-surrogate-model", valid.replace(b'"router"', b'"\\udfff"')),
        chat("lone-surrogate-key", valid[:-1] + b', "\\ud800": 1}'),
        chat("nul-in-content", valid.replace(b'"hello"', b'"a\\u0000b"')),
        chat("truncated-json", valid[:-7]),
        chat("truncated-in-string", valid[: valid.index(b"hello") + 2]),
        chat("empty-body", b""),
        chat("whitespace-body", b" \n\t "),
        chat("json-null", b"null"),
        chat("json-array", b"[]"),
        chat("json-string", b'"hi"'),
        chat("nested-list-100k", b"[" * 100_000),
        chat("nested-list-closed-100k", b"[" * 100_000 + b"]" * 100_000),
        chat("nested-object-100k", b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
        chat("nested-extra-field-900", valid[:-1] + b', "x": ' + b"[" * 900 + b"]" * 900 + b"}"),
        chat("nested-extra-field-5000", valid[:-1] + b', "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
        chat("nested-content-parts-100k", valid.replace(b'"hello"', b"[" * 100_000 + b"]" * 100_000)),
        chat("oversized-body", dump_json(_chat_json(padding="a" * (max_body_bytes + 1)))),
        chat(
            "megabyte-message",
            dump_json(
                {"model": "router", "messages": [{"role": "user", "content": "big " * ((max_body_bytes - 200) // 4)}]}
            ),
        ),
        chat(
            "megabyte-one-word",
            dump_json({"model": "router", "messages": [{"role": "user", "content": "x" * (max_body_bytes - 200)}]}),
        ),
        chat("many-messages", dump_json({"model": "router", "messages": [{"role": "user", "content": "m"}] * 20_000})),
        chat("wrong-content-type-text", valid, {"content-type": "text/plain"}),
        chat(
            "wrong-content-type-form",
            b"model=router&messages=hi",
            {"content-type": "application/x-www-form-urlencoded"},
        ),
        chat("no-content-type", valid, {}),
        chat("content-length-garbage", valid, {"content-type": "application/json", "content-length": "abc"}),
        with_field("nan-temperature", '"temperature": NaN'),
        with_field("infinity-top-p", '"top_p": Infinity'),
        with_field("minus-infinity-penalty", '"presence_penalty": -Infinity'),
        with_field("overflow-float-temperature", '"temperature": 1e999'),
        with_field("overflow-float-max-tokens", '"max_tokens": 1e999'),
        with_field("negative-temperature", '"temperature": -0.5'),
        with_field("huge-max-tokens", '"max_tokens": 1000000000000000000000000000000'),
        with_field("huge-max-completion-tokens", '"max_completion_tokens": 9223372036854775808'),
        with_field("zero-max-tokens", '"max_tokens": 0'),
        with_field("absurd-n", '"n": 1000000000'),
        with_field("negative-n", '"n": -3'),
        with_field("huge-seed", '"seed": 100000000000000000000000000000000000'),
        with_field("float-seed", '"seed": 1.5'),
        with_field("string-temperature", '"temperature": "hot"'),
        with_field("bool-max-tokens", '"max_tokens": true'),
        with_field("stop-too-many", '"stop": ["a", "b", "c", "d", "e"]'),
        with_field("stop-empty-string", '"stop": [""]'),
        with_field("stream-string", '"stream": "yes"'),
        with_field("stream-options-list", '"stream": true, "stream_options": []'),
        with_field("router-threshold-2", '"router_threshold": 2'),
        with_field("duplicate-keys", '"model": "nope", "model": "router"'),
        chat("missing-messages", dump_json({"model": "router"})),
        chat("missing-model", dump_json({"messages": [{"role": "user", "content": "q"}]})),
        chat("empty-messages", dump_json({"model": "router", "messages": []})),
        chat("messages-object", dump_json({"model": "router", "messages": {"role": "user", "content": "q"}})),
        chat("role-tool", dump_json({"model": "router", "messages": [{"role": "tool", "content": "q"}]})),
        chat("role-number", dump_json({"model": "router", "messages": [{"role": 7, "content": "q"}]})),
        chat("content-number", dump_json({"model": "router", "messages": [{"role": "user", "content": 7}]})),
        chat("user-without-content", dump_json({"model": "router", "messages": [{"role": "user"}]})),
        chat(
            "content-image-part",
            dump_json(
                {
                    "model": "router",
                    "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
                }
            ),
        ),
        chat(
            "content-part-no-type",
            dump_json({"model": "router", "messages": [{"role": "user", "content": [{"text": "x"}]}]}),
        ),
        chat("content-empty-array", dump_json({"model": "router", "messages": [{"role": "user", "content": []}]})),
        chat("unknown-model", dump_json(_chat_json(model="gpt-9"))),
        chat("router-variant-bad-threshold", dump_json(_chat_json(model="router-lexical-7"))),
        chat("model-megabyte", dump_json(_chat_json(model="m" * (max_body_bytes // 2)))),
        chat("threshold-header-nan", valid, {"content-type": "application/json", "x-slm-router-threshold": "nan"}),
        chat("tenant-header-braces", valid, {"content-type": "application/json", "x-slm-router-tenant": "}{x}:"}),
        chat(
            "cache-header-weird-body",
            dump_json(_chat_json(extra={"a": [1, {"b": None}]})),
            {"content-type": "application/json", "x-slm-router-cache": "true"},
        ),
        (
            "admin-keys-deep",
            FuzzRequest("POST", "/admin/keys", "nasty", b'{"name":' + b"[" * 100_000, credential="admin"),
        ),
        (
            "admin-keys-nan-budget",
            FuzzRequest("POST", "/admin/keys", "nasty", b'{"name": "x", "budget_usd": NaN}', credential="admin"),
        ),
        (
            "admin-keys-surrogate-name",
            FuzzRequest("POST", "/admin/keys", "nasty", b'{"name": "\\ud800"}', credential="admin"),
        ),
        (
            "admin-keys-surrogate-tenant",
            FuzzRequest("POST", "/admin/keys", "nasty", b'{"name": "x", "tenant": "\\udc00"}', credential="admin"),
        ),
        (
            "admin-routing-thresholds-inf",
            FuzzRequest("PUT", "/admin/routing", "nasty", b'{"thresholds": [1e999]}', credential="admin"),
        ),
        (
            "admin-routing-three-thresholds",
            FuzzRequest("PUT", "/admin/routing", "nasty", b'{"thresholds": [0.1, 0.2, 0.3]}', credential="admin"),
        ),
        ("admin-routing-invalid-utf8", FuzzRequest("PUT", "/admin/routing", "nasty", b"\xff\xff", credential="admin")),
        (
            "admin-simulate-nan",
            FuzzRequest("GET", "/admin/routing/simulate", "nasty", params={"threshold": "nan"}, credential="admin"),
        ),
        (
            "admin-simulate-inf",
            FuzzRequest("GET", "/admin/routing/simulate", "nasty", params={"threshold": "inf"}, credential="admin"),
        ),
        (
            "admin-audit-huge-limit",
            FuzzRequest(
                "GET", "/admin/routing/audit", "nasty", params={"limit": "99999999999999999999"}, credential="admin"
            ),
        ),
        (
            "admin-audit-negative-limit",
            FuzzRequest("GET", "/admin/routing/audit", "nasty", params={"limit": "-5"}, credential="admin"),
        ),
        (
            "admin-costs-bad-since",
            FuzzRequest("GET", "/admin/costs", "nasty", params={"since": "99999999999w"}, credential="admin"),
        ),
        ("admin-wrong-credential", FuzzRequest("GET", "/admin/keys", "nasty", credential="wrong")),
        ("admin-revoke-odd-id", FuzzRequest("DELETE", "/admin/keys/%7B%7D..%2F", "nasty", credential="admin")),
        ("admin-revoke-empty-id", FuzzRequest("DELETE", "/admin/keys/", "nasty", credential="admin")),
        ("chat-trailing-slash", FuzzRequest("POST", CHAT + "/", "nasty", valid, json_ct)),
        ("model-id-traversal", FuzzRequest("GET", "/v1/models/../../etc/passwd", "nasty")),
        ("model-id-percent-nul", FuzzRequest("GET", "/v1/models/%00", "nasty")),
        ("model-id-surrogate", FuzzRequest("GET", "/v1/models/%ED%A0%80", "nasty")),
        ("model-id-long", FuzzRequest("GET", "/v1/models/" + "m" * 20_000, "nasty")),
        (
            "keyed-nested-extra-field-250",
            FuzzRequest(
                "POST", CHAT, "nasty", valid[:-1] + b', "x": ' + b"[" * 250 + b"]" * 250 + b"}", json_ct, "keyed"
            ),
        ),
        chat(
            "cache-nested-extra-field-250",
            valid[:-1] + b', "x": ' + b"[" * 250 + b"]" * 250 + b"}",
            {"content-type": "application/json", "x-slm-router-cache": "true"},
        ),
        ("keyed-no-key", FuzzRequest("POST", CHAT, "nasty", valid, {"authorization": "Bearer "}, target="keyed")),
        (
            "keyed-garbage-key",
            FuzzRequest("POST", CHAT, "nasty", valid, {"authorization": "Bearer sk-slm-zz-;'\"{}"}, target="keyed"),
        ),
        ("keyed-nested-100k", FuzzRequest("POST", CHAT, "nasty", b"[" * 100_000, json_ct, target="keyed")),
        (
            "keyed-surrogate-content",
            FuzzRequest("POST", CHAT, "nasty", valid.replace(b'"hello"', b'"\\ud800"'), json_ct, target="keyed"),
        ),
    ]
    return cases
