"""The gateway's one exception tree and its mapping to OpenAI's error envelope.

Every failure a client can see is a :class:`GatewayError`. The HTTP layer maps it to
``{"error": {"message", "type", "param", "code"}}`` with :meth:`GatewayError.to_openai`
and :attr:`GatewayError.status_code`; nothing else in the code base builds error bodies.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AuthenticationError",
    "ConfigError",
    "EngineDeadError",
    "EngineOverloadedError",
    "GatewayError",
    "InvalidRequestError",
    "ModelNotFoundError",
    "ModelRefusedParameterError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServiceUnavailableError",
    "UnsupportedParameterError",
    "UpstreamError",
    "UpstreamTimeoutError",
    "error_body",
]


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """Build OpenAI's error envelope."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class GatewayError(Exception):
    """Base of every error the gateway reports to a client."""

    status_code: ClassVar[int] = 500
    error_type: ClassVar[str] = "api_error"
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.retry_after = retry_after

    def to_openai(self) -> dict[str, Any]:
        """The error as OpenAI's JSON envelope."""
        return error_body(self.message, self.error_type, self.param, self.code)

    def headers(self) -> dict[str, str]:
        """Extra response headers (``Retry-After`` where a retry makes sense)."""
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, round(self.retry_after)))}


class InvalidRequestError(GatewayError):
    """The request is malformed or violates the schema (HTTP 400)."""

    status_code = 400
    error_type = "invalid_request_error"


class UnsupportedParameterError(InvalidRequestError):
    """A valid OpenAI parameter that this gateway does not support (HTTP 400)."""

    default_code = "unsupported_parameter"


class ModelRefusedParameterError(InvalidRequestError):
    """A model refused a parameter the client sent that other models take (HTTP 400).

    OpenAI's reasoning models, for one, take no ``temperature`` or ``top_p``. The client's
    request is not wrong as such, so a routed request may move to another tier; a request
    that named the model gets the 400 with the model's reason.
    """

    default_code = "unsupported_value"


class AuthenticationError(GatewayError):
    """No valid API key (HTTP 401)."""

    status_code = 401
    error_type = "invalid_request_error"
    default_code = "invalid_api_key"


class PermissionDeniedError(GatewayError):
    """Valid caller, forbidden action, e.g. an admin endpoint without the admin credential (HTTP 403)."""

    status_code = 403
    error_type = "invalid_request_error"
    default_code = "permission_denied"


class RateLimitError(GatewayError):
    """Over a requests- or tokens-per-minute limit, or over budget (HTTP 429 with ``Retry-After``)."""

    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class NotFoundError(GatewayError):
    """The addressed resource does not exist (HTTP 404)."""

    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class ModelNotFoundError(NotFoundError):
    """The requested model is not served here (HTTP 404)."""

    default_code = "model_not_found"


class PayloadTooLargeError(GatewayError):
    """The request body is over the configured limit (HTTP 413)."""

    status_code = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"


class UpstreamError(GatewayError):
    """A model upstream failed (HTTP 502)."""

    status_code = 502
    error_type = "upstream_error"
    default_code = "upstream_error"


class ServiceUnavailableError(GatewayError):
    """The gateway or a tier cannot take the request now (HTTP 503)."""

    status_code = 503
    error_type = "service_unavailable"
    default_code = "service_unavailable"


class EngineDeadError(ServiceUnavailableError):
    """A tier's engine has failed for good: its replica answers nothing until it is replaced (HTTP 503)."""

    default_code = "engine_dead"


class EngineOverloadedError(ServiceUnavailableError):
    """A model engine's queue is full (HTTP 503 with ``Retry-After``)."""

    default_code = "overloaded"


class UpstreamTimeoutError(GatewayError):
    """A model upstream did not answer in time (HTTP 504)."""

    status_code = 504
    error_type = "timeout"
    default_code = "upstream_timeout"


class ConfigError(GatewayError):
    """The configuration is invalid; raised at start-up, never per request."""

    error_type = "config_error"
