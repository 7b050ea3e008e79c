"""Fuzzing the HTTP API: hostile requests never get a 5xx, a hang or a body outside the contract.

The target is two in-process replicas (auth off, and auth on with a real key) over the
session's real Redis and fake OpenAI upstream, routing with the shipped learned router
(:mod:`tests.fuzz.harness`). Hand-written nasty requests run as parametrized cases with
their expected status; then Hypothesis generates a bounded, derandomized mix of wrong
bodies, raw bytes and admin calls (``python -m tests.fuzz.fuzz_http`` runs the long version).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings

from gateway.config import ServerConfig
from gateway.redis_server import EmbeddedRedis
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.fuzz.bodies import FuzzRequest, raw_chat_requests
from tests.fuzz.harness import FuzzTarget, Outcome
from tests.fuzz.mix import fuzz_requests
from tests.fuzz.nasty import nasty_requests
from tests.fuzz.oracle import envelope_problems, violations

#: The limit the target runs with (the config default), known before the target starts.
MAX_BODY = ServerConfig().max_body_bytes
NASTY = nasty_requests(MAX_BODY)
#: Generated requests per CI run (plus the nasty ones): about 30 s on a quiet 2-core box.
GENERATED_EXAMPLES = 1_200
RAW_EXAMPLES = 300

#: The status each nasty case must get; cases not listed only have to keep the contract.
EXPECTED_STATUS = {
    "invalid-utf8": 400,
    "invalid-utf8-only": 400,
    "utf16-json": 400,
    "bom-prefixed-json": 400,
    "lone-surrogate-content": 400,
    "lone-surrogate-to-large": 400,
    "lone-surrogate-stream-large": 400,
    "surrogate-pair-emoji": 200,
    "lone-surrogate-model": 400,
    "lone-surrogate-key": 400,
    "nul-in-content": 200,
    "truncated-json": 400,
    "truncated-in-string": 400,
    "empty-body": 400,
    "json-null": 400,
    "json-array": 400,
    "nested-list-100k": 400,
    "nested-list-closed-100k": 400,
    "nested-object-100k": 400,
    "nested-extra-field-900": 400,
    "nested-extra-field-5000": 400,
    "nested-content-parts-100k": 400,
    "keyed-nested-extra-field-250": 400,
    "cache-nested-extra-field-250": 400,
    "oversized-body": 413,
    "megabyte-message": 200,
    "megabyte-one-word": 200,
    "wrong-content-type-text": 200,
    "wrong-content-type-form": 400,
    "no-content-type": 200,
    "content-length-garbage": 400,
    "nan-temperature": 400,
    "infinity-top-p": 400,
    "minus-infinity-penalty": 400,
    "overflow-float-temperature": 400,
    "overflow-float-max-tokens": 400,
    "negative-temperature": 400,
    "huge-max-tokens": 400,
    "huge-max-completion-tokens": 400,
    "zero-max-tokens": 400,
    "absurd-n": 400,
    "negative-n": 400,
    "stop-too-many": 400,
    "missing-messages": 400,
    "missing-model": 400,
    "empty-messages": 400,
    "role-tool": 400,
    "content-image-part": 400,
    "unknown-model": 404,
    "model-megabyte": 404,
    "threshold-header-nan": 400,
    "admin-keys-deep": 400,
    "admin-keys-nan-budget": 400,
    "admin-keys-surrogate-name": 400,
    "admin-routing-thresholds-inf": 400,
    "admin-routing-invalid-utf8": 400,
    "admin-simulate-nan": 400,
    "admin-simulate-inf": 400,
    "admin-costs-bad-since": 400,
    "admin-wrong-credential": 403,
    "admin-revoke-odd-id": 404,
    "admin-revoke-empty-id": 404,
    "chat-trailing-slash": 404,
    "model-id-traversal": 404,
    "keyed-no-key": 401,
    "keyed-garbage-key": 401,
    "keyed-nested-100k": 400,
    "keyed-surrogate-content": 400,
}


@pytest.fixture(scope="module")
def target(redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream) -> Iterator[FuzzTarget]:
    fuzz_target = FuzzTarget(redis_server.url, fake_upstream.base_url, request_timeout_s=10).start()
    yield fuzz_target
    fuzz_target.close()


def assert_contract(request: FuzzRequest, outcome: Outcome) -> None:
    assert outcome.crash is None, f"{request.method} {request.path}: exception escaped the app: {outcome.crash}"
    assert outcome.status is not None, f"{request.method} {request.path}: no answer in {outcome.elapsed_s:.1f}s"
    problems = violations(request.path, outcome.status, outcome.headers, outcome.body)
    assert problems == [], f"{request.method} {request.path} {(request.content or b'')[:200]!r}: {problems}"


def test_target_runs_with_the_default_body_limit(target: FuzzTarget) -> None:
    assert target.max_body_bytes == MAX_BODY


def test_nasty_cases_cover_the_brief() -> None:
    names = {name for name, _ in NASTY}
    bodies = {name: request.content or b"" for name, request in NASTY}
    assert len(names) == len(NASTY), "case ids must be unique"
    assert all(name in names for name in EXPECTED_STATUS)
    assert len(bodies["nested-list-100k"]) == 100_000
    assert len(bodies["oversized-body"]) > MAX_BODY
    assert MAX_BODY // 2 < len(bodies["megabyte-message"]) <= MAX_BODY
    with pytest.raises(UnicodeDecodeError):
        bodies["invalid-utf8"].decode("utf-8")


@pytest.mark.parametrize(("name", "request_"), NASTY, ids=[name for name, _ in NASTY])
def test_nasty_request(target: FuzzTarget, name: str, request_: FuzzRequest) -> None:
    outcome = target.send(request_)
    assert_contract(request_, outcome)
    if name in EXPECTED_STATUS:
        assert outcome.status == EXPECTED_STATUS[name], outcome.body[:300]


_FUZZ_SETTINGS = settings(
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


@settings(_FUZZ_SETTINGS, max_examples=GENERATED_EXAMPLES)
@given(request=fuzz_requests(MAX_BODY))
def test_generated_requests_keep_the_contract(target: FuzzTarget, request: FuzzRequest) -> None:
    assert_contract(request, target.send(request))


@settings(_FUZZ_SETTINGS, max_examples=RAW_EXAMPLES)
@given(request=raw_chat_requests(MAX_BODY))
def test_generated_raw_bytes_keep_the_contract(target: FuzzTarget, request: FuzzRequest) -> None:
    outcome = target.send(request)
    assert_contract(request, outcome)
    assert outcome.status != 200 or request.content is not None


# --- the oracle itself must be able to fail -------------------------------------------------


def _envelope(**error: object) -> bytes:
    base: dict[str, object] = {"message": "m", "type": "invalid_request_error", "param": None, "code": None}
    return json.dumps({"error": {**base, **error}}).encode()


def test_oracle_accepts_the_envelope() -> None:
    assert envelope_problems(_envelope()) == []
    assert envelope_problems(_envelope(code=400, param="messages[0]")) == []


@pytest.mark.parametrize(
    "body",
    [
        b"Internal Server Error",
        b'{"detail": "Not Found"}',
        b'{"error": "bad"}',
        json.dumps({"error": {"message": "m", "type": "t"}}).encode(),
        _envelope(extra=1),
        _envelope(message=""),
        _envelope(param=3),
        _envelope(code=True),
        json.dumps({"error": {"message": "m", "type": "t", "param": None, "code": None}, "detail": 1}).encode(),
    ],
)
def test_oracle_rejects_other_error_bodies(body: bytes) -> None:
    assert envelope_problems(body) != []
    assert violations("/v1/chat/completions", 400, {"content-type": "application/json"}, body) != []


def test_oracle_rejects_5xx_and_bad_2xx() -> None:
    json_ct = {"content-type": "application/json"}
    assert violations("/v1/models/x", 500, json_ct, _envelope()) != []
    assert violations("/v1/models/x", 502, json_ct, _envelope()) != []
    assert violations("/v1/chat/completions", 200, json_ct, b'{"id": "x"}') != []
    assert violations("/v1/chat/completions", 400, {"content-type": "text/plain"}, _envelope()) != []
    sse = {"content-type": "text/event-stream"}
    assert violations("/v1/chat/completions", 200, sse, b'data: {"id": "x"}\n\n') != []
    assert violations("/admin/keys", 200, json_ct, b"[]") != []
    # /v1/completions: a text_completion (frames of them, streamed), nothing else.
    good = b'{"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m", "choices": [{"text": "a"}]}'
    assert violations("/v1/completions", 200, json_ct, good) == []
    assert violations("/v1/completions", 200, sse, b"data: " + good + b"\n\ndata: [DONE]\n\n") == []
    assert violations("/v1/completions", 200, json_ct, b'{"object": "chat.completion"}') != []
    assert violations("/v1/completions", 200, sse, b"data: " + good + b"\n\n") != []  # no [DONE]
    assert violations("/v1/completions", 200, json_ct, _envelope()) != []  # an error is no 2xx body
