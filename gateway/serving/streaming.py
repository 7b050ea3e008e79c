"""Server-sent events for a streamed chat completion, and their bookkeeping.

:meth:`SseStream.chunks` yields the stream as ``chat.completion.chunk`` objects (and, after a
failure that follows the first chunk, the error); :func:`encode_frames` writes them as the
chat API's SSE frames. Other APIs over the same pipeline (``/v1/responses``) read the chunks.

Usage is final only when the engine's stream ends, so the request is priced and
recorded here: at the end of a normal stream (the optional usage chunk then carries
the cost), after a mid-stream failure, or, when the client disconnects and the task is
cancelled, in a detached task, so the tokens already generated are never lost.

Every stream over the engine's is a :class:`ClosingStream`: closing it closes what it reads,
down to the engine, even when nobody ever read from it. A plain async generator that was never
started runs no ``finally`` when closed, so a client that left before the first frame would
have left the generation running and its usage unrecorded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gateway.accounting import RequestCost
from gateway.engine import EngineDelta
from gateway.errors import GatewayError, UpstreamError, UpstreamTimeoutError
from gateway.protocol import ChatCompletionChunk, ChoiceLogprobs, ChunkChoice, DeltaMessage, ToolCallDelta, Usage
from gateway.serving.observer import FinalUsage, RequestObservation

__all__ = ["ClosingStream", "SseStream", "StreamItem", "close_quietly", "encode_frames", "sse"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


#: What a chat stream yields: a chunk, or the error that ended it after the first chunk.
StreamItem = ChatCompletionChunk | GatewayError


def sse(payload: str) -> bytes:
    """One SSE ``data:`` frame."""
    return f"data: {payload}\n\n".encode()


class ClosingStream(AsyncIterator[T], Generic[T]):
    """``stream`` (an async generator) whose :meth:`aclose` also runs ``cleanup``.

    ``cleanup`` releases what ``stream`` reads (it closes the inner stream, or settles the
    request). It runs after the generator is closed whether or not iteration ever started, and
    must be safe to run twice, since the generator's own ``finally`` may have done the same.
    """

    def __init__(self, stream: AsyncGenerator[T], cleanup: Callable[[], Awaitable[None]]) -> None:
        self._stream = stream
        self._cleanup = cleanup
        self._closed = False

    @classmethod
    def over(cls, stream: AsyncGenerator[T], inner: AsyncIterator[Any]) -> ClosingStream[T]:
        """``stream``, reading ``inner``, that closes ``inner`` when closed."""
        return cls(stream, lambda: close_quietly(inner))

    def __aiter__(self) -> ClosingStream[T]:
        return self

    async def __anext__(self) -> T:
        return await self._stream.__anext__()

    async def aclose(self) -> None:
        """Close the generator, then run the cleanup (once; later calls do nothing)."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._stream.aclose()
        finally:
            await self._cleanup()


async def close_quietly(iterator: AsyncIterator[Any]) -> None:
    """Close a stream (cancelling generation below it), ignoring errors: the request is over."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            logger.debug("closing a stream failed", exc_info=True)


def encode_frames(items: AsyncIterator[StreamItem]) -> ClosingStream[bytes]:
    """The chat API's SSE frames for ``items``, ending in ``[DONE]``; closing this closes ``items``."""
    return ClosingStream.over(_frames(items), items)


async def _frames(items: AsyncIterator[StreamItem]) -> AsyncGenerator[bytes]:
    async for item in items:
        if isinstance(item, GatewayError):
            # Headers are gone; OpenAI's SDK raises on an in-stream error object.
            yield sse(json.dumps(item.to_openai()))
        else:
            yield sse(item.model_dump_json())
    yield sse("[DONE]")


@dataclass
class SseStream:
    """Turns engine deltas into ``chat.completion.chunk`` frames ending in ``[DONE]``."""

    request_id: str
    model: str
    tier_name: str
    served_model_name: str
    timeout_s: float
    include_usage: bool
    observation: RequestObservation | None = None
    #: The client asked for ``logprobs``: each content chunk carries its tokens'.
    logprobs: bool = False
    #: How many choices the engine generates (``n``); chunks carry each one's index.
    choices: int = 1

    def _has_output(self, piece: EngineDelta) -> bool:
        return bool(piece.text or piece.tool_calls or (self.logprobs and piece.logprobs))

    def _piece(self, created: int, piece: EngineDelta) -> ChatCompletionChunk:
        # Tool-call fragments pass through as OpenAI streams them; a chunk with only tool
        # calls has no content field, as OpenAI's have none.
        calls = [ToolCallDelta.model_validate(part.to_openai_delta()) for part in piece.tool_calls]
        content = piece.text if piece.text or not calls else None
        return self._chunk(created, DeltaMessage(content=content, tool_calls=calls or None), piece=piece)

    def _chunk(
        self,
        created: int,
        delta: DeltaMessage,
        finish_reason: str | None = None,
        piece: EngineDelta | None = None,
        index: int = 0,
    ) -> ChatCompletionChunk:
        logprobs = None
        if self.logprobs and piece is not None:
            logprobs = ChoiceLogprobs.of(t.to_openai() for t in piece.logprobs)
        choice = ChunkChoice(
            index=piece.index if piece is not None else index,
            delta=delta,
            finish_reason=finish_reason,
            logprobs=logprobs,
        )
        return ChatCompletionChunk(id=self.request_id, created=created, model=self.model, choices=[choice])

    def chunks(self, first: EngineDelta | None, deltas: AsyncIterator[EngineDelta]) -> ClosingStream[StreamItem]:
        """The stream's chunks; closing them cancels the engine's generation, read or not.

        A failure after the first chunk ends the stream with the error as its last item
        (the request is settled first); the chunks never raise a :class:`GatewayError`.
        """
        return ClosingStream(self._chunks(first, deltas), lambda: self._abandon(first, deltas))

    async def _chunks(
        self, first: EngineDelta | None, deltas: AsyncIterator[EngineDelta]
    ) -> AsyncGenerator[StreamItem]:
        created = int(time.time())
        last = first
        # Each choice ends with its first finish_reason; the stream, when every choice has.
        finished: dict[int, str] = {}
        called_tools: set[int] = set()
        try:
            for index in range(self.choices):
                yield self._chunk(created, DeltaMessage(role="assistant", content=""), index=index)
            delta = first
            deadline = asyncio.get_running_loop().time() + self.timeout_s
            while delta is not None:
                if self._has_output(delta):
                    self._first_token()
                    if delta.tool_calls:
                        called_tools.add(delta.index)
                    yield self._piece(created, delta)
                if delta.finish_reason is not None:
                    finished.setdefault(delta.index, delta.finish_reason)
                if len(finished) >= self.choices:
                    break
                try:
                    async with asyncio.timeout_at(deadline):
                        delta = await anext(deltas, None)
                except TimeoutError:
                    raise UpstreamTimeoutError(
                        f"{self.served_model_name} did not finish within {self.timeout_s:g}s"
                    ) from None
                if delta is not None:
                    last = delta
            for index in range(self.choices):
                reason = finished.get(index) or ("tool_calls" if index in called_tools else "stop")
                yield self._chunk(created, DeltaMessage(), reason, index=index)
            cost = await self._finish(last)
            if self.include_usage:
                prompt, completion = _usage(last)
                usage = Usage.counted(
                    prompt,
                    completion,
                    reasoning_tokens=last.reasoning_tokens if last is not None else 0,
                    cached_tokens=last.cached_tokens if last is not None else 0,
                    slm_router=cost.as_dict() if cost is not None else None,
                )
                yield ChatCompletionChunk(
                    id=self.request_id, created=created, model=self.model, choices=[], usage=usage
                )
        except GatewayError as exc:
            logger.warning("stream %s failed after start: %s", self.request_id, exc.message)
            await self._finish(last)
            yield exc
        except Exception:
            logger.exception("stream %s failed after start", self.request_id)
            await self._finish(last)
            yield UpstreamError(f"{self.served_model_name} failed mid-stream")
        finally:
            await self._abandon(last, deltas)

    async def _abandon(self, last: EngineDelta | None, deltas: AsyncIterator[EngineDelta]) -> None:
        # Reached when the stream ends however it ends, and when it is closed unread; a request
        # not yet settled lost its client (task cancelled, stream closed): record what was
        # generated anyway, outside this dying task (the observation settles only once).
        if self.observation is not None:
            self.observation.finish_later(self._final_usage(last))
        await close_quietly(deltas)

    def _first_token(self) -> None:
        if self.observation is not None:
            self.observation.first_token()

    async def _finish(self, last: EngineDelta | None) -> RequestCost | None:
        if self.observation is None:
            return None
        return await self.observation.finish(self._final_usage(last))

    def _final_usage(self, last: EngineDelta | None) -> FinalUsage:
        prompt, completion = _usage(last)
        cached = last.cached_tokens if last is not None else 0
        return FinalUsage(self.tier_name, self.model, prompt, completion, stream=True, cached_tokens=cached)


def _usage(last: EngineDelta | None) -> tuple[int, int]:
    return (last.prompt_tokens, last.completion_tokens) if last is not None else (0, 0)
