"""A hosted tier that already speaks OpenAI's Chat Completions API, called over pooled HTTP.

litellm earns its keep translating between providers; for an upstream that speaks
OpenAI's protocol (OpenAI itself, a vLLM server, the local stand-in) that work is ~8 ms
of CPU per call on our 2-core reference box, which caps a replica near 120 calls per
second. This engine posts the same body with one long-lived aiohttp session instead
and maps failures onto the gateway's exception tree the way the litellm engine does,
so routing, failover and accounting cannot tell the two transports apart.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from deployments.openai_responses import ChunkReader, completion_from_openai
from deployments.upstream_refusals import refused_client_field
from deployments.upstream_retries import call_with_retries
from gateway.config import LiteLLMTierConfig
from gateway.engine import ChatEngine, Completion, EngineDelta, GenerationRequest
from gateway.errors import (
    GatewayError,
    InvalidRequestError,
    ServiceUnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
)

__all__ = ["OpenAIHTTPChatEngine"]

#: OpenAI's own endpoint, used when the tier names no ``api_base``.
DEFAULT_API_BASE = "https://api.openai.com/v1"
#: The local stand-in ignores keys, but a header keeps the request shape identical.
_PLACEHOLDER_KEY = "not-needed-for-local-stand-in"
_CONTEXT_MARKERS = ("context_length_exceeded", "maximum context length", "context window", "too many tokens")


class _HTTPStatusError(Exception):
    """A non-2xx answer; carries what the translation needs and never the request headers."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"status {status}")
        self.status = status
        self.body = body


def _error_text(body: bytes) -> str:
    """The upstream error's code and message as sent (empty when the body is not OpenAI's envelope)."""
    try:
        error = json.loads(body).get("error") or {}
    except (ValueError, AttributeError):
        return ""
    if not isinstance(error, dict):
        return str(error)
    return f"{error.get('code') or ''} {error.get('message') or ''}".strip()


def _translate(exc: Exception, target: str) -> GatewayError:
    if isinstance(exc, TimeoutError):  # aiohttp.ServerTimeoutError is one too
        return UpstreamTimeoutError(f"{target} timed out")
    if isinstance(exc, _HTTPStatusError):
        status = exc.status
        if status == 429:
            return ServiceUnavailableError(
                f"{target} is rate limiting us; retry shortly", retry_after=5, code="upstream_rate_limited"
            )
        if status == 503:
            return ServiceUnavailableError(f"{target} is unavailable; retry shortly", retry_after=5)
        if status in (401, 403):
            return UpstreamError(f"{target} rejected the gateway's credentials", code="upstream_auth_failed")
        text = _error_text(exc.body)
        if status == 400 and any(marker in text.lower() for marker in _CONTEXT_MARKERS):
            return InvalidRequestError(
                f"the prompt is too long for {target}", param="messages", code="context_length_exceeded"
            )
        if (refusal := refused_client_field(target, status, text)) is not None:
            return refusal
        return UpstreamError(f"{target} failed with status {status}")
    return UpstreamError(f"{target} failed: {type(exc).__name__}")


class OpenAIHTTPChatEngine(ChatEngine):
    """Posts chat completions to an OpenAI-compatible ``api_base`` with a pooled client."""

    def __init__(self, tier: LiteLLMTierConfig, *, api_base: str | None = None) -> None:
        self._tier = tier
        base = api_base if api_base is not None else tier.api_base
        self._url = (base or DEFAULT_API_BASE).rstrip("/") + "/chat/completions"
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the connection pool (on the event loop that will use it)."""
        if self._session is None:
            # The ingress's own admission bounds concurrency; the pool must not be a second,
            # hidden queue in front of the upstream.
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(connector=connector, json_serialize=json.dumps)

    async def shutdown(self) -> None:
        """Close the pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self, request: GenerationRequest) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **request.trace_headers}
        key = _PLACEHOLDER_KEY if self._tier.uses_local_stand_in else None
        if key is None and self._tier.api_key_env:
            key = os.environ.get(self._tier.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _body(self, request: GenerationRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            **self._tier.extra_params,
            "model": self._tier.upstream_model,
            "messages": request.messages,
            self._tier.token_cap_field: request.max_tokens,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        body.update(request.openai_optional_fields())
        body.update(request.vllm_decoding_fields())  # a vLLM server behind the tier (vllm_decoding)
        return body

    def _model_name(self, reported: object) -> str:
        # The config's name is what clients asked for and what /v1/models lists.
        return self._tier.served_model_name or (reported if isinstance(reported, str) else "") or self._tier.model

    async def _post(self, request: GenerationRequest, stream: bool) -> aiohttp.ClientResponse:
        if self._session is None:
            await self.start()
        assert self._session is not None
        timeout_s = self._tier.timeout_s
        # A stream may run long; what must not happen is a silent upstream between chunks.
        timeout = (
            aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_read=timeout_s)
            if stream
            else aiohttp.ClientTimeout(total=timeout_s)
        )
        body = self._body(request, stream)
        headers = self._headers(request)

        async def attempt() -> aiohttp.ClientResponse:
            assert self._session is not None
            response = await self._session.post(self._url, json=body, headers=headers, timeout=timeout)
            if response.status >= 400:
                payload = await response.read()
                response.release()
                raise _HTTPStatusError(response.status, payload)
            return response

        return await call_with_retries(
            attempt,
            lambda exc: _translate(exc, self._tier.served_model_name),
            num_retries=self._tier.num_retries,
            backoff_s=self._tier.retry_backoff_s,
        )

    async def complete(self, request: GenerationRequest) -> Completion:
        """One non-stream upstream call."""
        response = await self._post(request, stream=False)
        try:
            data = await response.json(content_type=None)
            return completion_from_openai(data, self._model_name(data.get("model")))
        except (TimeoutError, aiohttp.ClientError, ValueError, AttributeError, TypeError) as exc:
            raise _translate(exc, self._tier.served_model_name) from exc
        finally:
            response.release()

    async def stream(self, request: GenerationRequest) -> AsyncIterator[EngineDelta]:
        """Stream server-sent events; usage comes from the final chunk."""
        response = await self._post(request, stream=True)
        reader = ChunkReader(self._model_name(None))
        finished = False
        try:
            async for event in _sse_events(response):
                for delta in reader.feed(event):
                    yield delta
            finished = True
        except (TimeoutError, aiohttp.ClientError, ValueError, AttributeError, TypeError) as exc:
            raise _translate(exc, self._tier.served_model_name) from exc
        finally:
            # Closing (not releasing) drops the connection, which is what tells the upstream
            # to stop generating when our client went away mid-stream.
            if not finished:
                response.close()
            else:
                response.release()
        for delta in reader.finish():
            yield delta


async def _sse_events(response: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """The JSON payloads of a ``text/event-stream`` body, up to ``data: [DONE]``."""
    buffer = b""
    async for chunk in response.content.iter_any():
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                return
            event = json.loads(data)
            if isinstance(event, dict):
                if "error" in event:
                    raise _HTTPStatusError(502, data)
                yield event
