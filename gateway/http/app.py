"""The thin FastAPI layer: parse, delegate to the serving logic, write the answer.

All error bodies come from :meth:`gateway.errors.GatewayError.to_openai`; anything
unexpected becomes a generic 500 envelope without a stack trace.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.errors import GatewayError, InvalidRequestError, PayloadTooLargeError, error_body
from gateway.protocol import ChatCompletionRequest
from gateway.protocol.parsing import parse_body
from gateway.serving import ChatCompletionService, ChatResult, HealthService

__all__ = ["create_http_app", "read_limited_body"]

logger = logging.getLogger(__name__)

#: Request header with a per-request routing threshold for the virtual router model.
THRESHOLD_REQUEST_HEADER = "x-slm-router-threshold"

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def read_limited_body(request: Request, limit: int) -> bytes:
    """Read the body, failing with 413 as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise PayloadTooLargeError(f"the request body is {declared} bytes; the limit is {limit}")
        except ValueError:
            raise InvalidRequestError("invalid Content-Length header") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"the request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _threshold_header(request: Request) -> float | None:
    raw = request.headers.get(THRESHOLD_REQUEST_HEADER)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidRequestError(
            f"header {THRESHOLD_REQUEST_HEADER} must be a number", param=THRESHOLD_REQUEST_HEADER
        ) from None
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise InvalidRequestError(
            f"header {THRESHOLD_REQUEST_HEADER} must be within [0, 1]", param=THRESHOLD_REQUEST_HEADER
        )
    return value


def _error_response(exc: GatewayError) -> JSONResponse:
    return JSONResponse(exc.to_openai(), status_code=exc.status_code, headers=exc.headers())


def create_http_app(
    chat: ChatCompletionService,
    health: HealthService,
    *,
    max_body_bytes: int,
    title: str = "slm-router",
) -> FastAPI:
    """Build the OpenAI-compatible HTTP app over the serving objects."""
    app = FastAPI(title=title, docs_url=None, redoc_url=None)

    @app.exception_handler(GatewayError)
    async def _gateway_error(_: Request, exc: GatewayError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(InvalidRequestError(f"invalid request: {exc.errors()[:1]}"))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = "invalid_request_error" if exc.status_code < 500 else "api_error"
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return JSONResponse(error_body(str(exc.detail), type_, None, code), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error")
        return JSONResponse(error_body("internal error", "api_error", None, "internal_error"), status_code=500)

    @app.post(
        "/v1/chat/completions",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ChatCompletionRequest.model_json_schema()}},
            }
        },
    )
    async def chat_completions(request: Request) -> Response:
        body = await read_limited_body(request, max_body_bytes)
        chat_request = parse_body(body, ChatCompletionRequest)
        result = await chat.create(chat_request, threshold_override=_threshold_header(request))
        if isinstance(result, ChatResult):
            return Response(
                content=result.response.model_dump_json(),
                media_type="application/json",
                headers=result.headers,
            )
        return StreamingResponse(
            result.frames, media_type="text/event-stream", headers={**_SSE_HEADERS, **result.headers}
        )

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return chat.list_models().model_dump()

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> dict[str, Any]:
        for card in chat.list_models().data:
            if card.id == model_id:
                return card.model_dump()
        chat.resolve_tier(model_id)  # raises the 404 envelope
        raise AssertionError("unreachable")

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/health/ready")
    async def ready() -> JSONResponse:
        report = await health.readiness()
        return JSONResponse(report.as_dict(), status_code=200 if report.ready else 503)

    return app
