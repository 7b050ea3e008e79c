"""How failures of a model deployment's handle map to the gateway's errors."""

from __future__ import annotations

from ray import exceptions as ray_exceptions
from ray.serve.exceptions import BackPressureError

from deployments.handle_engine import translate_ray_error
from gateway.errors import EngineOverloadedError, InvalidRequestError, ServiceUnavailableError, UpstreamError


def test_backpressure_is_503_with_retry_after() -> None:
    error = translate_ray_error(BackPressureError(num_queued_requests=9, max_queued_requests=8), "small")
    assert isinstance(error, EngineOverloadedError)
    assert error.status_code == 503 and error.headers() == {"Retry-After": "1"}


def test_remote_gateway_error_is_unwrapped() -> None:
    cause = InvalidRequestError("too long", param="messages", code="context_length_exceeded")
    wrapped = ray_exceptions.RayTaskError("stream", "traceback text", cause).as_instanceof_cause()
    error = translate_ray_error(wrapped, "small")
    assert error is cause


def test_remote_unexpected_error_hides_details() -> None:
    wrapped = ray_exceptions.RayTaskError("stream", "secret traceback", KeyError("x"))
    error = translate_ray_error(wrapped, "small")
    assert isinstance(error, UpstreamError)
    assert "traceback" not in error.message


def test_dead_actor_is_retryable_503() -> None:
    error = translate_ray_error(ray_exceptions.RayActorError(), "small")
    assert isinstance(error, ServiceUnavailableError) and error.retry_after is not None


def test_plain_gateway_error_passes_through() -> None:
    original = UpstreamError("boom")
    assert translate_ray_error(original, "small") is original
