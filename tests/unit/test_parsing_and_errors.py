from __future__ import annotations

import pytest

from gateway.errors import (
    EngineOverloadedError,
    GatewayError,
    InvalidRequestError,
    ModelNotFoundError,
    PayloadTooLargeError,
    UpstreamError,
    UpstreamTimeoutError,
)
from gateway.protocol import ChatCompletionRequest
from gateway.protocol.parsing import parse_body


def test_parse_valid_request_with_array_content_and_unknown_fields() -> None:
    body = (
        b'{"model": "router", "messages": [{"role": "system", "content": "be brief"},'
        b' {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],'
        b' "stop": "END", "max_completion_tokens": 5, "max_tokens": 9, "whatever": {"x": 1}}'
    )
    request = parse_body(body, ChatCompletionRequest)
    assert request.messages[1].text() == "ab"
    assert request.stop_sequences() == ["END"]
    assert request.requested_max_tokens() == 5
    assert not request.wants_usage_in_stream()


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b"\xff\xfe", "UTF-8"),
        (b"{", "not valid JSON"),
        (b'"a string"', "JSON object"),
        (b'{"model": "r", "messages": [{"role": "user", "content": "x"}], "top_p": Infinity}', "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "JSON"),
    ],
)
def test_parse_rejects_bad_bodies(body: bytes, fragment: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_body(body, ChatCompletionRequest)
    assert fragment in info.value.message
    assert info.value.status_code == 400


def test_validation_error_names_the_param() -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_body(
            b'{"model": "r", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}', ChatCompletionRequest
        )
    assert info.value.param is not None and info.value.param.startswith("messages[0].content")


@pytest.mark.parametrize(
    ("field", "fragment"),
    [
        # A union's type mismatch ("should be a valid string") came first and said nothing.
        ('"stop": ["a", "b", "c", "d", "e"]', "at most 4 items"),
        ('"stop": 5', "valid string"),  # every branch is a mismatch: the first is as good as any
    ],
)
def test_a_union_field_reports_the_bound_it_broke(field: str, fragment: str) -> None:
    body = '{"model": "r", "messages": [{"role": "user", "content": "x"}], ' + field + "}"
    with pytest.raises(InvalidRequestError) as info:
        parse_body(body.encode(), ChatCompletionRequest)
    assert info.value.param == "stop"
    assert fragment in info.value.message, info.value.message


def test_user_message_needs_content() -> None:
    with pytest.raises(InvalidRequestError):
        parse_body(b'{"model": "r", "messages": [{"role": "user"}]}', ChatCompletionRequest)


@pytest.mark.parametrize(
    ("error", "status", "type_"),
    [
        (InvalidRequestError("x"), 400, "invalid_request_error"),
        (ModelNotFoundError("x"), 404, "invalid_request_error"),
        (PayloadTooLargeError("x"), 413, "invalid_request_error"),
        (UpstreamError("x"), 502, "upstream_error"),
        (EngineOverloadedError("x", retry_after=0.2), 503, "service_unavailable"),
        (UpstreamTimeoutError("x"), 504, "timeout"),
    ],
)
def test_error_envelope_and_status(error: GatewayError, status: int, type_: str) -> None:
    assert error.status_code == status
    body = error.to_openai()
    assert body == {"error": {"message": "x", "type": type_, "param": None, "code": error.code}}


def test_retry_after_is_a_whole_number_of_seconds() -> None:
    assert EngineOverloadedError("busy", retry_after=0.2).headers() == {"Retry-After": "1"}
    assert EngineOverloadedError("busy", retry_after=7.6).headers() == {"Retry-After": "8"}
    assert UpstreamError("x").headers() == {}
