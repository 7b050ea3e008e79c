"""The thin FastAPI layer: read the request, delegate to the serving logic, write the answer.

All error bodies come from :meth:`gateway.errors.GatewayError.to_openai`; anything
unexpected becomes a generic 500 envelope without a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from gateway.errors import GatewayError, InvalidRequestError, PayloadTooLargeError, error_body
from gateway.http.open_requests import OpenRequests, OpenRequestsMiddleware
from gateway.protocol import ChatCompletionRequest
from gateway.protocol.completions import CompletionRequest
from gateway.protocol.parsing import parse_body
from gateway.routing.live import RoutingUpdate
from gateway.serving import ChatCompletionService, ChatResult, HealthService
from gateway.serving.access import AccessControl
from gateway.serving.admin import AdminService, CreateKeyRequest
from gateway.serving.assembly import ReplicaServices
from gateway.serving.completions_endpoint import CompletionsEndpoint, CompletionsResult
from gateway.serving.conversations_endpoint import ConversationsEndpoint
from gateway.serving.endpoint import ChatEndpoint
from gateway.serving.responses_endpoint import ResponsesEndpoint, ResponsesResult, ResponsesStream

__all__ = ["GatewayServices", "create_http_app", "read_limited_body"]

logger = logging.getLogger(__name__)

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class _EventStreamResponse(StreamingResponse):
    """An SSE response that closes its body when it ends, however it ends.

    Starlette drops a body it stops reading (the client left) and never closes one it never
    started (the client left before the first byte); either way the generation below would run
    on and its usage go unrecorded until garbage collection. Closing the body cancels the
    generation and settles the request.
    """

    def __init__(self, body: AsyncIterator[bytes], headers: Mapping[str, str]) -> None:
        super().__init__(body, media_type="text/event-stream", headers={**_SSE_HEADERS, **headers})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Shielded: the task may be cancelled, and the close must still reach the engine.
            with anyio.CancelScope(shield=True):
                aclose = getattr(self.body_iterator, "aclose", None)
                if aclose is not None:
                    await aclose()


@dataclass
class GatewayServices:
    """What the HTTP layer delegates to (built once per replica)."""

    chat: ChatCompletionService
    endpoint: ChatEndpoint
    health: HealthService
    access: AccessControl
    admin: AdminService | None = None
    #: Renders the Prometheus exposition (``/metrics``); ``None`` hides the route.
    metrics: Callable[[], Awaitable[tuple[bytes, str]]] | None = None
    #: Counts open ``/v1/`` requests and adds the gauge to ``/metrics`` (``None``: not counted).
    open_requests: OpenRequests | None = None
    #: Serves ``/v1/responses`` (``None`` hides the routes).
    responses: ResponsesEndpoint | None = None
    #: Serves ``/v1/completions`` (``None`` hides the route).
    completions: CompletionsEndpoint | None = None
    #: Serves ``/v1/conversations`` (``None`` hides the routes).
    conversations: ConversationsEndpoint | None = None

    @classmethod
    def of(
        cls, replica: ReplicaServices, *, operator_routes: bool = True, open_requests: OpenRequests | None = None
    ) -> GatewayServices:
        """The HTTP view of a replica's services; ``operator_routes=False`` hides admin and metrics."""
        return cls(
            chat=replica.chat,
            endpoint=replica.endpoint,
            health=replica.health,
            access=replica.access,
            admin=replica.admin if operator_routes else None,
            metrics=replica.render_metrics if operator_routes else None,
            open_requests=open_requests,
            responses=replica.responses,
            completions=replica.completions,
            conversations=replica.conversations,
        )


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


def _error_response(exc: GatewayError) -> JSONResponse:
    return JSONResponse(exc.to_openai(), status_code=exc.status_code, headers=exc.headers())


def create_http_app(services: GatewayServices, *, max_body_bytes: int, title: str = "slm-router") -> FastAPI:
    """Build the OpenAI-compatible HTTP app over the serving objects."""
    # No trailing-slash redirects: a 307 has no error envelope, and "/admin/keys/" (an empty
    # key id) would bounce a DELETE to a route that only takes GET and POST.
    app = FastAPI(title=title, docs_url=None, redoc_url=None, redirect_slashes=False)
    open_requests = services.open_requests
    if open_requests is not None:
        app.add_middleware(OpenRequestsMiddleware, counter=open_requests)

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
        result = await services.endpoint.handle(body, request.headers)
        if isinstance(result, ChatResult):
            return Response(result.response.model_dump_json(), media_type="application/json", headers=result.headers)
        return _EventStreamResponse(result.frames, result.headers)

    if services.responses is not None:
        _add_responses_routes(app, services.responses, max_body_bytes)
    if services.completions is not None:
        _add_completions_route(app, services.completions, max_body_bytes)
    if services.conversations is not None:
        _add_conversations_routes(app, services.conversations, max_body_bytes)

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        await services.access.authenticate(request.headers.get("authorization"))
        return services.chat.list_models().model_dump()

    @app.get("/v1/models/{model_id:path}")
    async def get_model(request: Request, model_id: str) -> dict[str, Any]:
        await services.access.authenticate(request.headers.get("authorization"))
        for card in services.chat.list_models().data:
            if card.id == model_id:
                return card.model_dump()
        services.chat.resolve_tier(model_id)  # raises the 404 envelope
        raise AssertionError("unreachable")

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/health/ready")
    async def ready() -> JSONResponse:
        report = await services.health.readiness()
        if open_requests is not None and open_requests.draining:
            # A balancer that sees this stops sending before the replica goes.
            return JSONResponse({**report.as_dict(), "status": "draining"}, status_code=503)
        return JSONResponse(report.as_dict(), status_code=200 if report.ready else 503)

    if services.metrics is not None:
        render = services.metrics

        @app.get("/metrics")
        async def metrics() -> Response:
            payload, content_type = await render()
            if open_requests is not None:
                payload += open_requests.exposition()
            return Response(payload, media_type=content_type)

    if services.admin is not None:
        _add_admin_routes(app, services.admin, services.access, max_body_bytes)
    return app


def _add_responses_routes(app: FastAPI, responses: ResponsesEndpoint, max_body_bytes: int) -> None:
    @app.post("/v1/responses")
    async def create_response(request: Request) -> Response:
        body = await read_limited_body(request, max_body_bytes)
        result = await responses.create(body, request.headers)
        if isinstance(result, ResponsesResult):
            return JSONResponse(result.body, headers=result.headers)
        return _EventStreamResponse(result.events, result.headers)

    @app.get("/v1/responses/{response_id}")
    async def get_response(request: Request, response_id: str) -> Response:
        result = await responses.retrieve(response_id, request.headers, request.query_params)
        if isinstance(result, ResponsesStream):
            return _EventStreamResponse(result.events, result.headers)
        return JSONResponse(result)

    @app.get("/v1/responses/{response_id}/input_items")
    async def list_input_items(request: Request, response_id: str) -> dict[str, Any]:
        return await responses.input_items(response_id, request.headers, request.query_params)

    @app.post("/v1/responses/{response_id}/cancel")
    async def cancel_response(request: Request, response_id: str) -> dict[str, Any]:
        return await responses.cancel(response_id, request.headers)

    @app.delete("/v1/responses/{response_id}")
    async def delete_response(request: Request, response_id: str) -> dict[str, Any]:
        return await responses.delete(response_id, request.headers)


def _add_conversations_routes(app: FastAPI, conversations: ConversationsEndpoint, max_body_bytes: int) -> None:
    base = "/v1/conversations"

    @app.post(base)
    async def create_conversation(request: Request) -> dict[str, Any]:
        return await conversations.create(await read_limited_body(request, max_body_bytes), request.headers)

    @app.get(base + "/{conversation_id}")
    async def get_conversation(request: Request, conversation_id: str) -> dict[str, Any]:
        return await conversations.retrieve(conversation_id, request.headers)

    @app.post(base + "/{conversation_id}")
    async def update_conversation(request: Request, conversation_id: str) -> dict[str, Any]:
        body = await read_limited_body(request, max_body_bytes)
        return await conversations.update(conversation_id, body, request.headers)

    @app.delete(base + "/{conversation_id}")
    async def delete_conversation(request: Request, conversation_id: str) -> dict[str, Any]:
        return await conversations.delete(conversation_id, request.headers)

    @app.post(base + "/{conversation_id}/items")
    async def add_conversation_items(request: Request, conversation_id: str) -> dict[str, Any]:
        body = await read_limited_body(request, max_body_bytes)
        return await conversations.add_items(conversation_id, body, request.headers)

    @app.get(base + "/{conversation_id}/items")
    async def list_conversation_items(request: Request, conversation_id: str) -> dict[str, Any]:
        return await conversations.list_items(conversation_id, request.headers, request.query_params)

    @app.get(base + "/{conversation_id}/items/{item_id}")
    async def get_conversation_item(request: Request, conversation_id: str, item_id: str) -> dict[str, Any]:
        return await conversations.get_item(conversation_id, item_id, request.headers)

    @app.delete(base + "/{conversation_id}/items/{item_id}")
    async def delete_conversation_item(request: Request, conversation_id: str, item_id: str) -> dict[str, Any]:
        return await conversations.delete_item(conversation_id, item_id, request.headers)


def _add_completions_route(app: FastAPI, completions: CompletionsEndpoint, max_body_bytes: int) -> None:
    @app.post(
        "/v1/completions",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": CompletionRequest.model_json_schema()}},
            }
        },
    )
    async def create_completion(request: Request) -> Response:
        body = await read_limited_body(request, max_body_bytes)
        result = await completions.create(body, request.headers)
        if isinstance(result, CompletionsResult):
            return Response(result.body.model_dump_json(), media_type="application/json", headers=result.headers)
        return _EventStreamResponse(result.frames, result.headers)


def _add_admin_routes(app: FastAPI, admin: AdminService, access: AccessControl, max_body_bytes: int) -> None:
    @app.post("/admin/keys")
    async def create_key(request: Request) -> JSONResponse:
        access.require_admin(request.headers.get("authorization"))
        body = parse_body(await read_limited_body(request, max_body_bytes), CreateKeyRequest)
        return JSONResponse(await admin.create_key(body), status_code=201, headers={"Cache-Control": "no-store"})

    @app.get("/admin/keys")
    async def list_keys(request: Request) -> dict[str, Any]:
        access.require_admin(request.headers.get("authorization"))
        return await admin.list_keys()

    @app.delete("/admin/keys/{key_id}")
    async def revoke_key(request: Request, key_id: str) -> dict[str, Any]:
        access.require_admin(request.headers.get("authorization"))
        return await admin.revoke_key(key_id)

    @app.get("/admin/capture")
    async def captured(request: Request, limit: int = 1000) -> Any:
        access.require_admin(request.headers.get("authorization"))
        return JSONResponse(await admin.captured(limit), headers={"Cache-Control": "no-store"})

    @app.delete("/admin/capture")
    async def clear_captured(request: Request) -> Any:
        access.require_admin(request.headers.get("authorization"))
        return await admin.clear_captured()

    @app.get("/admin/routing")
    async def get_routing(request: Request) -> dict[str, Any]:
        access.require_admin(request.headers.get("authorization"))
        return await admin.routing()

    @app.put("/admin/routing")
    async def put_routing(request: Request) -> dict[str, Any]:
        access.require_admin(request.headers.get("authorization"))
        change = parse_body(await read_limited_body(request, max_body_bytes), RoutingUpdate)
        operator = (request.headers.get("x-slm-router-operator") or "admin").strip()[:64] or "admin"
        return await admin.update_routing(change, operator)

    @app.get("/admin/routing/audit")
    async def routing_audit(request: Request, limit: int = 50) -> dict[str, Any]:
        access.require_admin(request.headers.get("authorization"))
        return await admin.routing_audit(limit)

    @app.get("/admin/routing/simulate")
    async def simulate(request: Request, threshold: float) -> dict[str, Any]:
        access.require_admin(request.headers.get("authorization"))
        return await admin.simulate(threshold)

    @app.get("/admin/costs")
    async def costs(request: Request, since: str = "24h") -> dict[str, Any]:
        access.require_admin(request.headers.get("authorization"))
        return await admin.costs(since)
