"""Every error case over real HTTP: OpenAI's envelope, the right status, never a 500 or a hang."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
import ray

from tests.fakes.openai_upstream import UpstreamBehaviour

URL = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def http(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=30)


def assert_envelope(
    response: httpx.Response, status: int, *, param: str | None = None, code: str | None = None
) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in error["message"]
    if param is not None:
        assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    return error


def test_malformed_json(http: httpx.Client) -> None:
    response = http.post(
        URL, content=b'{"model": "router", "messages": [', headers={"content-type": "application/json"}
    )
    assert_envelope(response, 400)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "router", "messages": []}, "messages"),
        ({"model": "router"}, "messages"),
        ({"messages": MESSAGES}, "model"),
        ({"model": "router", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": "router", "messages": MESSAGES, "temperature": 3}, "temperature"),
        ({"model": "router", "messages": MESSAGES, "max_tokens": 0}, "max_tokens"),
        ({"model": "router", "messages": MESSAGES, "max_tokens": 10**9}, "max_tokens"),
        ({"model": "router", "messages": MESSAGES, "top_p": -1}, "top_p"),
        ({"model": "router", "messages": MESSAGES, "n": 9}, "n"),
        (
            {"model": "router", "messages": MESSAGES, "tools": [{"type": "function", "function": {"name": "f g"}}]},
            "tools[0].function.name",
        ),
        ({"model": "router", "messages": MESSAGES, "tool_choice": "required"}, "tool_choice"),
        (
            {"model": "router", "messages": [*MESSAGES, {"role": "tool", "tool_call_id": "c", "content": "x"}]},
            "messages[1].tool_call_id",
        ),
        (
            {
                "model": "smollm2-135m-instruct",
                "messages": MESSAGES,
                "tools": [{"type": "function", "function": {"name": "f"}}],
            },
            "tools",
        ),
        ({"model": "router", "messages": MESSAGES, "response_format": {"type": "json_object"}}, "messages"),
        ({"model": "router", "messages": MESSAGES, "response_format": {"type": "xml"}}, "response_format.type"),
        (
            {
                "model": "router",
                "messages": MESSAGES,
                "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}},
            },
            "response_format.json_schema.schema",
        ),
        (
            {"model": "router", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages[0].content",
        ),
        ({"model": "router", "messages": MESSAGES, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ],
)
def test_schema_violations(http: httpx.Client, body: dict[str, object], param: str) -> None:
    error = assert_envelope(http.post(URL, json=body), 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_nan_is_rejected(http: httpx.Client) -> None:
    raw = b'{"model": "router", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}'
    assert_envelope(http.post(URL, content=raw, headers={"content-type": "application/json"}), 400)


def test_non_object_body_and_bad_utf8(http: httpx.Client) -> None:
    assert_envelope(http.post(URL, content=b"[1, 2]"), 400)
    assert_envelope(http.post(URL, content=b'{"model": "\xff"}'), 400)


def test_unknown_fields_are_tolerated(http: httpx.Client) -> None:
    body = {
        "model": "fake-large",
        "messages": MESSAGES,
        "logit_bias": {},
        "metadata": {"a": 1},
        "brand_new_field": True,
    }
    assert http.post(URL, json=body).status_code == 200


def test_unknown_model_is_404(http: httpx.Client) -> None:
    assert_envelope(
        http.post(URL, json={"model": "gpt-99", "messages": MESSAGES}), 404, param="model", code="model_not_found"
    )


def test_body_over_limit_is_413(http: httpx.Client) -> None:
    big = {"model": "router", "messages": [{"role": "user", "content": "x" * 70_000}]}
    assert_envelope(http.post(URL, content=json.dumps(big).encode()), 413)


def _failed_requests_logged() -> int:
    """How many failed requests Serve's replicas have logged (with a traceback) in this Ray session."""
    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    files = [*logs.glob("worker-*.err"), *logs.glob("serve/replica_*.log")]  # stderr; Serve's own files
    return sum(path.read_text(errors="replace").count("Request failed.") for path in files)


def test_a_prompt_over_the_small_context_window(http: httpx.Client) -> None:
    prompt = [{"role": "user", "content": "word " * 1500}]  # ~1,500 tokens; the small tier holds 1,024
    logged = _failed_requests_logged()
    small = http.post(URL, json={"model": "smollm2-135m-instruct", "messages": prompt, "max_tokens": 4})
    error = assert_envelope(small, 400, param="messages", code="context_length_exceeded")
    # OpenAI's wording: the stand-in's litellm client reads it as a context-window error too.
    assert str(error["message"]).startswith("This model's maximum context length is 1024 tokens.")
    # Routed to the small model (threshold 1), it climbs past the stand-in (the same model) to
    # the large tier, for the reason that it is too long (it was an upstream "error" before).
    routed = http.post(URL, json={"model": "router", "messages": prompt}, headers={"x-slm-router-threshold": "1"})
    assert routed.status_code == 200, routed.text
    assert routed.headers["x-slm-router-tier"] == "large"
    assert routed.headers["x-slm-router-reason"] == "escalated:context_length"
    # A client's error is not a failed request in the model replica's logs (Serve logged each
    # one with its traceback at ERROR).
    time.sleep(1)  # the replicas' log handlers write as they go; leave them a moment
    assert _failed_requests_logged() == logged


def test_upstream_failure_is_502(http: httpx.Client, upstream_behaviour: UpstreamBehaviour) -> None:
    upstream_behaviour.fail_status = 500
    assert_envelope(http.post(URL, json={"model": "fake-large", "messages": MESSAGES}), 502)


def test_upstream_overload_is_503_with_retry_after(http: httpx.Client, upstream_behaviour: UpstreamBehaviour) -> None:
    upstream_behaviour.fail_status = 503
    response = http.post(URL, json={"model": "fake-large", "messages": MESSAGES})
    assert_envelope(response, 503)
    assert int(response.headers["retry-after"]) >= 1


def test_upstream_hang_is_504_not_a_hang(http: httpx.Client, upstream_behaviour: UpstreamBehaviour) -> None:
    upstream_behaviour.hang = True
    response = http.post(URL, json={"model": "fake-large", "messages": MESSAGES})
    assert_envelope(response, 504)


def test_stream_upstream_failure_before_first_token_is_an_http_error(
    http: httpx.Client, upstream_behaviour: UpstreamBehaviour
) -> None:
    upstream_behaviour.fail_status = 500
    response = http.post(URL, json={"model": "fake-large", "messages": MESSAGES, "stream": True})
    assert_envelope(response, 502)


def test_unknown_route_and_method(http: httpx.Client) -> None:
    assert_envelope(http.get("/v1/nothing"), 404)
    assert_envelope(http.get(URL), 405)


def test_health_endpoints(http: httpx.Client) -> None:
    assert http.get("/health/live").json() == {"status": "alive"}
    ready = http.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"tier:small": "ok", "redis": "ok"}
    assert ready.json()["status"] == "ready"
