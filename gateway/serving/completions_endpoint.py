"""``/v1/completions`` (OpenAI's legacy Completions API) over the chat pipeline.

A completion request is served as a chat request whose one user message is the prompt,
marked :attr:`~gateway.protocol.ChatCompletionRequest.raw_prompt`: keys, rate limits, the
cache, routing (the router scores the prompt), failover, cost and the ledger are the chat
endpoint's own code, and the same ``x-slm-router-*`` headers come back. Only tiers that
continue text without a chat template serve it (vLLM's; hosted chat models do not): a routed
prompt that scores for a hosted tier is answered by the nearest one that does
(``x-slm-router-reason: completions``), and naming a hosted model is a 400. The answer goes
back as ``text_completion`` objects (stream chunks too), logprobs in the legacy shape.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

from pydantic import ValidationError

from gateway.errors import GatewayError, InvalidRequestError
from gateway.protocol import ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, ChoiceLogprobs
from gateway.protocol.completions import (
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    CompletionResponse,
    reject_unsupported_completion,
)
from gateway.protocol.parsing import parse_body
from gateway.protocol.unsupported import UNSUPPORTED_PARAMETERS
from gateway.serving.access import Caller
from gateway.serving.chat import ChatResult
from gateway.serving.endpoint import ChatEndpoint
from gateway.serving.param_names import ParamNames
from gateway.serving.streaming import ClosingStream, StreamItem, sse
from gateway.telemetry.semconv import OPERATION_TEXT_COMPLETION

__all__ = [
    "CompletionsEndpoint",
    "CompletionsResult",
    "CompletionsStream",
    "completion_chat_form",
    "completion_response",
]

#: Parameters the chat pipeline refuses (:data:`UNSUPPORTED_PARAMETERS`), carried over to it.
_REFUSED = frozenset(name for name, _, _ in UNSUPPORTED_PARAMETERS)

#: Chat parameter names in errors from the shared pipeline, and what a completions client sent.
_in_completions_terms = ParamNames({"messages": "prompt", "max_completion_tokens": "max_tokens"})


@dataclasses.dataclass
class CompletionsResult:
    """A finished ``text_completion`` and its headers."""

    body: CompletionResponse
    headers: dict[str, str]


@dataclasses.dataclass
class CompletionsStream:
    """A started completion stream: SSE frames ending in ``[DONE]``, and the headers."""

    frames: ClosingStream[bytes]
    headers: dict[str, str]


def completion_chat_form(request: CompletionRequest) -> ChatCompletionRequest:
    """The chat request that serves ``request``: the prompt as its one user message, raw."""
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [{"role": "user", "content": request.prompt}],
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "n": request.n,
        "stream": bool(request.stream),
        "stream_options": request.stream_options.model_dump() if request.stream_options else None,
        "stop": request.stop,
        "seed": request.seed,
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        "logit_bias": request.logit_bias,
        "user": request.user,
        "router_threshold": request.router_threshold,
        **request.vllm_params(),
        "structured_outputs": request.structured_outputs.for_engine() if request.structured_outputs else None,
        "stop_token_ids": request.stop_token_ids,
        "allowed_token_ids": request.allowed_token_ids,
        "bad_words": request.bad_words,
        # Refused by the pipeline as on chat (vLLM's old guided_* names, say), not dropped here.
        **{name: value for name, value in (request.model_extra or {}).items() if name in _REFUSED},
    }
    if request.logprobs is not None:
        body["logprobs"] = True
        body["top_logprobs"] = request.logprobs
    try:
        chat = ChatCompletionRequest.model_validate({k: v for k, v in body.items() if v is not None})
    except ValidationError as exc:
        # Every field was checked on the completions side; this would be the gateway's own bug,
        # and is still the client's 400 rather than a 500 with the request lost.
        error = exc.errors()[0]
        raise InvalidRequestError(
            f"the completion cannot be served: {error['msg']}", param=str(error["loc"][0])
        ) from None
    return chat.as_raw_prompt()


def _completion_id(chat_id: str) -> str:
    return "cmpl-" + chat_id.removeprefix("chatcmpl-")


def _logprobs(logprobs: ChoiceLogprobs | None, offset: int = 0) -> CompletionLogprobs | None:
    return CompletionLogprobs.of(logprobs.content or [], offset) if logprobs is not None else None


def _finish(reason: str | None) -> Any:
    # A completion ends by a stop, its length or a filter; chat's other reasons cannot occur here.
    return None if reason is None else reason if reason in ("length", "content_filter") else "stop"


def completion_response(response: ChatCompletionResponse) -> CompletionResponse:
    """A finished chat completion in the Completions API's shape."""
    return CompletionResponse(
        id=_completion_id(response.id),
        created=response.created,
        model=response.model,
        choices=[
            CompletionChoice(
                text=choice.message.content or "",
                index=choice.index,
                logprobs=_logprobs(choice.logprobs),
                finish_reason=_finish(choice.finish_reason),
            )
            for choice in response.choices
        ],
        usage=response.usage,
    )


async def _completion_frames(chunks: AsyncIterator[StreamItem], wants_logprobs: bool) -> AsyncGenerator[bytes]:
    offsets: dict[int, int] = {}  # characters sent so far, by choice: where logprobs' offsets resume
    async for item in chunks:
        if isinstance(item, GatewayError):
            yield sse(json.dumps(_in_completions_terms(item).to_openai()))
            continue
        frame = _completion_chunk(item, offsets, wants_logprobs)
        if frame is not None:
            yield sse(frame.model_dump_json(exclude_none=True))
    yield sse("[DONE]")


def _completion_chunk(
    chunk: ChatCompletionChunk, offsets: dict[int, int], wants_logprobs: bool
) -> CompletionResponse | None:
    choices = []
    for choice in chunk.choices:
        text = choice.delta.content or ""
        if not text and choice.finish_reason is None and choice.logprobs is None:
            continue  # the role-only opening chunk: nothing to say in this API
        start = offsets.get(choice.index, 0)
        offsets[choice.index] = start + len(text)
        logprobs = _logprobs(choice.logprobs, start) if wants_logprobs else None
        choices.append(
            CompletionChoice(
                text=text, index=choice.index, logprobs=logprobs, finish_reason=_finish(choice.finish_reason)
            )
        )
    if not choices and chunk.usage is None:
        return None
    return CompletionResponse(
        id=_completion_id(chunk.id), created=chunk.created, model=chunk.model, choices=choices, usage=chunk.usage
    )


class CompletionsEndpoint:
    """The Completions API over the chat pipeline (:class:`ChatEndpoint`)."""

    def __init__(self, chat: ChatEndpoint) -> None:
        self._chat = chat

    async def create(self, body: bytes, headers: Mapping[str, str]) -> CompletionsResult | CompletionsStream:
        """``POST /v1/completions``; every failure is a :class:`GatewayError`."""
        wants_logprobs = False

        async def read(raw: bytes, caller: Caller) -> ChatCompletionRequest:
            nonlocal wants_logprobs
            request = parse_body(raw, CompletionRequest)
            reject_unsupported_completion(request)
            wants_logprobs = request.logprobs is not None
            return completion_chat_form(request)

        try:
            result = await self._chat.handle(body, headers, read=read, operation=OPERATION_TEXT_COMPLETION)
        except GatewayError as error:
            raise _in_completions_terms(error) from None
        if isinstance(result, ChatResult):
            return CompletionsResult(body=completion_response(result.response), headers=result.headers)
        frames = ClosingStream.over(_completion_frames(result.chunks, wants_logprobs), result.chunks)
        return CompletionsStream(frames=frames, headers=result.headers)
