"""Hypothesis strategies for hostile HTTP requests to the gateway.

Three families, mixed with the Responses API's by :func:`tests.fuzz.mix.fuzz_requests`:

* *structured but wrong* chat bodies: a valid request with fields mutated to wrong types,
  out-of-range or non-finite numbers, missing or extra fields, odd roles and content parts;
* *raw bytes*: invalid UTF-8, truncated or deeply nested JSON, non-JSON, oversized bodies;
* requests to the admin API and ``/v1/models/{id}`` with wrong bodies, queries and ids.

Each example is a :class:`FuzzRequest`; ``kind`` labels its family for the statistics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

__all__ = [
    "CHAT",
    "MODELS",
    "ROLES",
    "FuzzRequest",
    "admin_requests",
    "chat_bodies",
    "chat_requests",
    "dump_json",
    "json_values",
    "mutated_chat_bodies",
    "raw_chat_requests",
    "request_headers",
    "response_formats",
    "schemas",
    "valid_chat_bodies",
]

CHAT = "/v1/chat/completions"
#: Models the fuzz target serves, plus names that parse as router variants.
MODELS = ["router", "small-model", "fake-large", "router-lexical-0.4", "router-lexical-7", "router-", "router-x-y-z"]
ROLES = ["system", "developer", "user", "assistant", "tool", "function", "", "USER", "user ", "\u0000"]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/octet-stream",
    "",
]

# Printable ASCII only: HTTP header values must be latin-1, and httpx refuses control characters.
_HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
_INTS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2**31, 2**53 + 1, 2**63, 2**64, 10**30, -(10**30)]),
)
_FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([-0.0, 1e-320, 1e308, -1e308, 2.0000001, 1.0000001, -2.0000001]),
)
#: Text that sometimes holds lone UTF-16 surrogates (``json.dumps`` writes them as ``\\udXXX`` escapes).
_TEXT = st.one_of(
    st.text(max_size=20),
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"]), min_size=1, max_size=3),
)
_SCALARS = st.one_of(st.none(), st.booleans(), _INTS, _FLOATS, _TEXT)


def json_values(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    """Arbitrary JSON-like values (NaN and Infinity included: ``json.dumps`` writes them)."""
    return st.recursive(
        _SCALARS,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=max_leaves,
    )


@dataclass(frozen=True)
class FuzzRequest:
    """One HTTP request to send; ``target`` picks the app (``open``: no auth, ``keyed``: API key)."""

    method: str
    path: str
    kind: str
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    target: str = "open"
    #: Query parameters.
    params: dict[str, str] = field(default_factory=dict)
    #: ``admin`` sends the admin credential, ``wrong`` a wrong one, ``none`` nothing extra.
    credential: str = "none"


def _sometimes(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(value, json_values(4))


def _content_parts() -> st.SearchStrategy[Any]:
    text_part = st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=30)})
    odd_part = st.one_of(
        st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": st.text()})}),
        st.fixed_dictionaries({"type": st.just("input_audio"), "input_audio": json_values(3)}),
        st.fixed_dictionaries({"type": st.text(max_size=10), "text": json_values(2)}),
        st.fixed_dictionaries({"text": st.text(max_size=10)}),
        st.fixed_dictionaries({"type": st.just("text")}),
        json_values(3),
    )
    return st.lists(st.one_of(text_part, odd_part), max_size=4)


#: Tool names and call ids drawn from small sets, so that calls, answers and choices sometimes match.
_TOOL_NAMES = st.sampled_from(["get_weather", "f", "a b", "x" * 65, ""])
_CALL_IDS = st.sampled_from(["c1", "c2", ""])


def _tool_calls() -> st.SearchStrategy[Any]:
    function = st.fixed_dictionaries(
        {"name": st.one_of(_TOOL_NAMES, json_values(1)), "arguments": st.one_of(st.just("{}"), json_values(1))}
    )
    call = st.fixed_dictionaries(
        {"id": st.one_of(_CALL_IDS, json_values(1)), "type": st.sampled_from(["function", "code"])},
        optional={"function": st.one_of(function, json_values(2))},
    )
    return st.one_of(st.lists(call, max_size=3), json_values(3))


def tool_definitions() -> st.SearchStrategy[Any]:
    """``tools`` values, mostly well shaped, with hostile names, schemas and fields."""
    function = st.fixed_dictionaries(
        {"name": st.one_of(_TOOL_NAMES, json_values(1))},
        optional={"parameters": schemas(), "description": _TEXT, "strict": json_values(1)},
    )
    tool = st.fixed_dictionaries(
        {"type": st.sampled_from(["function", "retrieval"])}, optional={"function": st.one_of(function, json_values(2))}
    )
    return st.one_of(st.lists(tool, max_size=3), json_values(3))


def legacy_functions() -> st.SearchStrategy[Any]:
    """Legacy ``functions`` values (each one a ``tools[i].function``), often hostile."""
    function = st.fixed_dictionaries(
        {"name": st.one_of(_TOOL_NAMES, json_values(1))},
        optional={"parameters": schemas(), "description": _TEXT},
    )
    return st.one_of(st.lists(st.one_of(function, json_values(2)), max_size=3), json_values(3))


def legacy_function_calls() -> st.SearchStrategy[Any]:
    """Legacy ``function_call`` values: ``none``, ``auto``, a named function, and junk."""
    named = st.fixed_dictionaries({"name": st.one_of(_TOOL_NAMES, json_values(1))})
    return st.one_of(st.sampled_from(["none", "auto", "required"]), named, json_values(2))


def tool_choices() -> st.SearchStrategy[Any]:
    """``tool_choice`` values: the strings OpenAI knows, named functions, and junk."""
    named = st.fixed_dictionaries(
        {"type": st.sampled_from(["function", "tool"]), "function": st.fixed_dictionaries({"name": _TOOL_NAMES})}
    )
    return st.one_of(st.sampled_from(["none", "auto", "required", "any"]), named, json_values(2))


def _messages() -> st.SearchStrategy[Any]:
    content = st.one_of(st.text(max_size=60), _content_parts(), st.none(), json_values(3))
    message = st.fixed_dictionaries(
        {"role": st.one_of(st.sampled_from(ROLES), json_values(2)), "content": content},
        optional={
            "name": _sometimes(st.text(max_size=10)),
            "tool_calls": _tool_calls(),
            "tool_call_id": st.one_of(_CALL_IDS, json_values(1)),
            "function_call": st.one_of(
                st.fixed_dictionaries({"name": _TOOL_NAMES, "arguments": st.just("{}")}), json_values(2)
            ),
            "refusal": json_values(1),
        },
    )
    # Sometimes drop a required key entirely.
    mangled = message.flatmap(
        lambda m: st.sampled_from([m, {k: v for k, v in m.items() if k != "role"}, {"content": m.get("content")}])
    )
    return st.one_of(st.lists(mangled, max_size=5), json_values(3))


def schemas() -> st.SearchStrategy[Any]:
    """JSON Schemas with right and wrong keyword values."""
    # JSON Schema keywords with right and wrong values: the gateway's checker and the engines
    # must turn every one of them into a 200 or a 400.
    keyword = st.sampled_from(
        ["type", "properties", "required", "items", "enum", "pattern", "$schema", "$ref", "$defs", "maxLength", "anyOf"]
    )
    value = st.one_of(
        st.sampled_from(["object", "string", "integer", "objekt", "(?<=a)b", "(", "#", "#/$defs/x", "http://x/s#"]),
        st.sampled_from(["http://json-schema.org/draft-07/schema#", "https://json-schema.org/draft/2020-12/schema"]),
        json_values(3),
    )
    return st.one_of(st.dictionaries(keyword, value, max_size=4), json_values(3))


def response_formats() -> st.SearchStrategy[Any]:
    """``response_format`` values, mostly well shaped, with hostile names, schemas and fields."""
    spec = st.fixed_dictionaries(
        {"name": st.one_of(st.sampled_from(["answer", "a b", "x" * 65]), st.text(max_size=8))},
        optional={"schema": schemas(), "strict": json_values(1), "description": _TEXT, "schemas": json_values(2)},
    )
    return st.one_of(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["text", "json_object", "json_schema", "xml", ""])},
            optional={"json_schema": st.one_of(spec, json_values(2))},
        ),
        json_values(3),
    )


def chat_bodies() -> st.SearchStrategy[dict[str, Any]]:
    """Chat request objects, mostly wrong in one or more fields (some valid)."""
    number = st.one_of(_FLOATS, _INTS, st.text(max_size=5), st.booleans(), st.none())
    integer = st.one_of(_INTS, _FLOATS, st.text(max_size=5), st.booleans(), st.none())
    optional = {
        "temperature": number,
        "top_p": number,
        "presence_penalty": number,
        "frequency_penalty": number,
        "router_threshold": number,
        "max_tokens": integer,
        "max_completion_tokens": integer,
        "n": integer,
        "seed": integer,
        "stop": st.one_of(st.text(max_size=5), st.lists(st.text(max_size=5), max_size=6), json_values(2)),
        "user": _sometimes(st.text(max_size=30)),
        "stream": st.one_of(st.booleans(), json_values(1)),
        "stream_options": st.one_of(st.fixed_dictionaries({"include_usage": json_values(1)}), json_values(2)),
        "logprobs": json_values(1),
        "tools": tool_definitions(),
        "tool_choice": tool_choices(),
        "parallel_tool_calls": json_values(1),
        "functions": legacy_functions(),
        "function_call": legacy_function_calls(),
        "response_format": response_formats(),
        "logit_bias": st.one_of(
            st.dictionaries(st.one_of(st.integers(-5, 10**10).map(str), st.text(max_size=6)), number, max_size=4),
            json_values(2),
        ),
        "reasoning_effort": st.one_of(st.sampled_from(["low", "high", "none", "xhigh", "", "LOW"]), json_values(1)),
        "verbosity": st.one_of(st.sampled_from(["low", "medium", "high", "max"]), json_values(1)),
    }
    body = st.fixed_dictionaries(
        {
            "model": st.one_of(st.sampled_from(MODELS), st.text(max_size=20), json_values(1)),
            "messages": _messages(),
        },
        optional=optional,
    )
    extra = st.dictionaries(st.text(max_size=12), json_values(3), max_size=3)
    drop = st.sets(st.sampled_from(["model", "messages"]), max_size=2)
    return st.builds(lambda b, e, d: {**{k: v for k, v in b.items() if k not in d}, **e}, body, extra, drop)


def valid_chat_bodies() -> st.SearchStrategy[dict[str, Any]]:
    """Requests the gateway must answer with 200 (a control group for the oracle)."""
    text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40)
    return st.fixed_dictionaries(
        {
            "model": st.sampled_from(["router", "small-model", "fake-large"]),
            "messages": st.lists(
                st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]), "content": text}),
                min_size=1,
                max_size=3,
            ).map(lambda ms: [*ms, {"role": "user", "content": "q"}]),
        },
        optional={
            "temperature": st.floats(0, 2),
            "top_p": st.floats(0.01, 1),
            "max_tokens": st.integers(1, 4096),
            "stream": st.booleans(),
            "seed": st.integers(-(2**31), 2**31),
            "stop": st.lists(st.text("abc", min_size=1, max_size=3), max_size=4),
            "response_format": st.sampled_from(
                [
                    {"type": "text"},
                    {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}},
                    {"type": "json_schema", "json_schema": {"name": "b", "strict": True}},
                ]
            ),
        },
    )


_FIELDS = [
    "model",
    "messages",
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "router_threshold",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "seed",
    "stop",
    "user",
    "stream",
    "stream_options",
    "response_format",
    "logit_bias",
    "reasoning_effort",
    "verbosity",
]


def mutated_chat_bodies() -> st.SearchStrategy[dict[str, Any]]:
    """A valid request with one or two fields (or one message) replaced by a hostile value."""
    hostile = st.one_of(_FLOATS, _INTS, json_values(3), st.text(max_size=10))
    overrides = st.dictionaries(st.sampled_from(_FIELDS), hostile, min_size=1, max_size=2)
    odd_message = _messages().map(lambda ms: ms if isinstance(ms, list) else [ms])
    return st.one_of(
        st.builds(lambda base, extra: {**base, **extra}, valid_chat_bodies(), overrides),
        st.builds(lambda base, odd: {**base, "messages": base["messages"] + odd}, valid_chat_bodies(), odd_message),
    )


def request_headers() -> st.SearchStrategy[dict[str, str]]:
    """The gateway's request headers (content type, threshold, cache, tenant, trace, auth), often wrong."""
    return st.fixed_dictionaries(
        {"content-type": st.sampled_from([*CONTENT_TYPES[:2], *CONTENT_TYPES])},
        optional={
            "x-slm-router-threshold": st.one_of(
                st.sampled_from(["0.5", "nan", "inf", "-1", "1e400", "", " 0.2 "]), _HEADER_TEXT
            ),
            "x-slm-router-cache": st.sampled_from(["true", "false", "1", "yes", "maybe", ""]),
            "x-slm-router-tenant": st.one_of(st.sampled_from(["acme", "{x}", "a:b", "x" * 200, ""]), _HEADER_TEXT),
            "traceparent": st.one_of(st.just("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), _HEADER_TEXT),
            "authorization": st.one_of(st.sampled_from(["Bearer ", "Bearer sk-slm-0-x", "Basic Zm9v"]), _HEADER_TEXT),
        },
    )


def dump_json(value: Any) -> bytes:
    # allow_nan: the wire then carries NaN/Infinity tokens, which the gateway must refuse.
    return json.dumps(value, allow_nan=True).encode()


def chat_requests(body: st.SearchStrategy[Any], kind: str) -> st.SearchStrategy[FuzzRequest]:
    """``POST /v1/chat/completions`` with ``body``, hostile headers, to either app."""
    return posts(CHAT, kind, body)


def posts(path: str, kind: str, body: st.SearchStrategy[Any]) -> st.SearchStrategy[FuzzRequest]:
    """``POST path`` with ``body``, hostile headers, to either app (``kind`` names the family)."""
    return st.builds(
        lambda b, h, t: FuzzRequest("POST", path, kind, dump_json(b), h, t),
        body,
        request_headers(),
        st.sampled_from(["open", "open", "keyed"]),
    )


def raw_chat_requests(max_body_bytes: int) -> st.SearchStrategy[FuzzRequest]:
    """Byte-level garbage for ``POST /v1/chat/completions``."""
    valid = dump_json({"model": "router", "messages": [{"role": "user", "content": "hello"}]})
    truncated = st.integers(0, len(valid) - 1).map(lambda n: valid[:n])
    nested = st.builds(
        lambda depth, opener: opener * depth,
        st.sampled_from([10, 500, 999, 1_000, 5_000, 100_000]),
        st.sampled_from([b"[", b'{"a":', b'{"model": "router", "messages": [{"role": "user", "content": [']),
    )
    closed_nesting = st.builds(
        lambda depth: (
            dump_json({"model": "router", "messages": [{"role": "user", "content": "q"}]})[:-1]
            + b', "extra": '
            + b"[" * depth
            + b"]" * depth
            + b"}"
        ),
        st.sampled_from([100, 250, 900, 990, 3_000, 50_000]),
    )
    invalid_utf8 = st.builds(lambda a, b: a + b, st.sampled_from([b'{"model": "', b"", b"\xef\xbb\xbf{"]), st.binary())
    oversized = st.sampled_from([max_body_bytes + 1, 2 * max_body_bytes]).map(
        lambda n: dump_json({"model": "router", "messages": [{"role": "user", "content": "a" * n}]})
    )
    megabyte = st.sampled_from([max_body_bytes - 200, max_body_bytes // 2]).map(
        lambda n: dump_json({"model": "router", "messages": [{"role": "user", "content": "word " * (n // 5)}]})
    )
    garbage = st.one_of(
        st.binary(max_size=200),
        st.sampled_from([b"", b" ", b"null", b"[]", b"1", b'"x"', b"NaN", b"{}", b'{"model": NaN}', b"\x00" * 8]),
        st.builds(lambda t: t.encode("utf-16"), st.text(max_size=20)),
    )
    body = st.one_of(truncated, nested, closed_nesting, invalid_utf8, oversized, megabyte, garbage)
    return st.builds(
        lambda b, ct, t: FuzzRequest("POST", CHAT, "raw", b, {"content-type": ct} if ct else {}, t),
        body,
        st.sampled_from(CONTENT_TYPES),
        st.sampled_from(["open", "keyed"]),
    )


def admin_requests() -> st.SearchStrategy[FuzzRequest]:
    """Wrong bodies, queries and ids for ``/admin/*`` and ``/v1/models/{id}`` (with the admin credential)."""
    key_body = st.fixed_dictionaries(
        {},
        optional={
            "name": _sometimes(st.text(max_size=120)),
            "tenant": _sometimes(st.text(max_size=70)),
            "rpm_limit": st.one_of(_INTS, json_values(1)),
            "tpm_limit": st.one_of(_INTS, json_values(1)),
            "budget_usd": st.one_of(_FLOATS, json_values(1)),
            "routing_defaults": json_values(3),
            "extra": json_values(1),
        },
    )
    routing_body = st.fixed_dictionaries(
        {},
        optional={
            "threshold": st.one_of(_FLOATS, json_values(1)),
            "thresholds": st.one_of(st.lists(_FLOATS, max_size=3), json_values(2)),
            "target_share": st.one_of(_FLOATS, json_values(1)),
            "budget_usd_per_hour": st.one_of(_FLOATS, json_values(1)),
            "over_budget": st.one_of(st.sampled_from(["small", "reject", "x"]), json_values(1)),
            "mode": st.one_of(st.sampled_from(["threshold", "target", "x"]), json_values(1)),
            "clear_budget": json_values(1),
        },
    )
    body_bytes = st.one_of(key_body.map(dump_json), routing_body.map(dump_json), st.binary(max_size=50))
    path_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="?#"), max_size=30)
    query = st.one_of(st.sampled_from(["nan", "inf", "-1", "1e400", "", "0.5", "99999999999999999999"]), path_text)
    auth = st.sampled_from(["admin", "admin", "admin", "none", "wrong"])

    def build(kind: str, method: str, path: str, body: bytes | None, params: dict[str, str], who: str) -> FuzzRequest:
        return FuzzRequest(method, path, kind, body, params=params, credential=who)

    return st.one_of(
        st.builds(build, st.just("admin"), st.just("POST"), st.just("/admin/keys"), body_bytes, st.just({}), auth),
        st.builds(build, st.just("admin"), st.just("PUT"), st.just("/admin/routing"), body_bytes, st.just({}), auth),
        st.builds(
            build,
            st.just("admin"),
            st.just("GET"),
            st.sampled_from(["/admin/routing/simulate", "/admin/routing/audit", "/admin/costs", "/admin/keys"]),
            st.none(),
            st.fixed_dictionaries({}, optional={"threshold": query, "limit": query, "since": query}),
            auth,
        ),
        st.builds(
            build,
            st.just("admin"),
            st.just("DELETE"),
            path_text.map(lambda p: f"/admin/keys/{p}"),
            st.none(),
            st.just({}),
            auth,
        ),
        st.builds(
            build,
            st.just("models"),
            st.just("GET"),
            st.one_of(path_text, st.sampled_from(MODELS)).map(lambda p: f"/v1/models/{p}"),
            st.none(),
            st.just({}),
            st.just("none"),
        ),
    )
