"""The hosted large-model tier: ``litellm.acompletion`` behind the ChatEngine interface.

litellm is a library here, never its proxy. Its import costs seconds, so it happens
once per process in :meth:`LiteLLMChatEngine.start`, with the bundled price map
(``LITELLM_LOCAL_MODEL_COST_MAP``) and without its debug banner.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

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

__all__ = ["LiteLLMChatEngine", "import_litellm"]

#: litellm's OpenAI provider insists on a key; the local stand-in and keyless servers ignore it.
_PLACEHOLDER_KEY = "not-needed-for-local-stand-in"


def import_litellm() -> Any:
    """Import litellm quietly, offline, once per process (Python caches the module)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    return litellm


def _translate(litellm: Any, exc: BaseException, target: str) -> GatewayError:
    errors = litellm.exceptions
    if isinstance(exc, errors.Timeout):
        return UpstreamTimeoutError(f"{target} timed out")
    if isinstance(exc, errors.ContextWindowExceededError):
        return InvalidRequestError(
            f"the prompt is too long for {target}", param="messages", code="context_length_exceeded"
        )
    if isinstance(exc, errors.RateLimitError):
        return ServiceUnavailableError(
            f"{target} is rate limiting us; retry shortly", retry_after=5, code="upstream_rate_limited"
        )
    if isinstance(exc, errors.ServiceUnavailableError):
        return ServiceUnavailableError(f"{target} is unavailable; retry shortly", retry_after=5)
    if isinstance(exc, errors.AuthenticationError):
        # The client did nothing wrong: our upstream credential is missing or wrong.
        return UpstreamError(f"{target} rejected the gateway's credentials", code="upstream_auth_failed")
    status = getattr(exc, "status_code", None)
    if (refusal := refused_client_field(target, status, str(getattr(exc, "message", "") or exc))) is not None:
        return refusal
    return UpstreamError(f"{target} failed" + (f" with status {status}" if status else f": {type(exc).__name__}"))


class LiteLLMChatEngine(ChatEngine):
    """Calls a hosted (or locally stood-in) OpenAI-compatible model through litellm."""

    def __init__(self, tier: LiteLLMTierConfig, *, api_base: str | None = None) -> None:
        self._tier = tier
        self._api_base = api_base if api_base is not None else tier.api_base
        self._litellm: Any = None

    async def start(self) -> None:
        """Import litellm (seconds, once)."""
        self._litellm = import_litellm()

    def _api_key(self) -> str | None:
        if self._tier.uses_local_stand_in:
            return _PLACEHOLDER_KEY
        if self._tier.api_key_env:
            return os.environ.get(self._tier.api_key_env)
        # No key configured: a keyless OpenAI-compatible server (a local vLLM, say). litellm's
        # OpenAI provider refuses to call without some key, so it gets a placeholder.
        return _PLACEHOLDER_KEY if self._tier.model.startswith("openai/") else None

    def _kwargs(self, request: GenerationRequest, stream: bool) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            **self._tier.extra_params,
            "model": self._tier.model,
            "messages": request.messages,
            self._tier.token_cap_field: request.max_tokens,
            "timeout": self._tier.timeout_s,
            # Retries are ours (with backoff, see _with_retries); litellm's would be immediate.
            "num_retries": 0,
            "stream": stream,
        }
        if stream:
            kwargs["stream_options"] = {"include_usage": True}
        if self._api_base:
            kwargs["api_base"] = self._api_base
        api_key = self._api_key()
        if api_key:
            kwargs["api_key"] = api_key
        kwargs.update(request.openai_optional_fields())
        # The tier's config says its model takes these; litellm's own table (which knows
        # verbosity only for the GPT-5 names, say) must not refuse them for it. Parameters
        # litellm maps itself (reasoning_effort for Anthropic) are still mapped.
        if sent := [name for name in self._tier.model_params if getattr(request, name) is not None]:
            kwargs["allowed_openai_params"] = sent
        if decoding := request.vllm_decoding_fields():
            # A vLLM server behind the tier (vllm_decoding): body fields litellm passes as they are.
            kwargs["extra_body"] = {**kwargs.get("extra_body", {}), **decoding}
        if request.trace_headers:
            kwargs["extra_headers"] = {**kwargs.get("extra_headers", {}), **request.trace_headers}
        return kwargs

    def _model_name(self, reported: str | None) -> str:
        # The config's name is what clients asked for and what /v1/models lists.
        return self._tier.served_model_name or reported or self._tier.model

    async def _call(self, litellm: Any, kwargs: dict[str, Any]) -> Any:
        """``litellm.acompletion`` with retries and exponential backoff on retryable failures."""
        return await call_with_retries(
            lambda: litellm.acompletion(**kwargs),
            lambda exc: _translate(litellm, exc, self._tier.served_model_name),
            num_retries=self._tier.num_retries,
            backoff_s=self._tier.retry_backoff_s,
        )

    async def complete(self, request: GenerationRequest) -> Completion:
        """One non-stream upstream call."""
        litellm = self._litellm or import_litellm()
        response = await self._call(litellm, self._kwargs(request, stream=False))
        return completion_from_openai(response, self._model_name(getattr(response, "model", None)))

    async def stream(self, request: GenerationRequest) -> AsyncIterator[EngineDelta]:
        """Stream from the upstream; usage comes from its final chunk."""
        litellm = self._litellm or import_litellm()
        response = await self._call(litellm, self._kwargs(request, stream=True))
        reader = ChunkReader(self._model_name(None))
        try:
            async for chunk in response:
                for delta in reader.feed(chunk):
                    yield delta
        except Exception as exc:
            raise _translate(litellm, exc, self._tier.served_model_name) from exc
        finally:
            close = getattr(response, "aclose", None)
            if close is not None:
                await close()
        for delta in reader.finish():
            yield delta
