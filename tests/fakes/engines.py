"""A scripted :class:`~gateway.engine.ChatEngine` for unit tests of the serving logic."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from gateway.engine import ChatEngine, EngineDelta, GenerationRequest, TokenLogprob, ToolCallPart
from gateway.errors import GatewayError

__all__ = ["ScriptedEngine"]


def _logprobs(request: GenerationRequest, piece: str, index: int) -> tuple[TokenLogprob, ...]:
    # Piece i is one token with logprob -i/4; its alternatives are itself and "alt<k>".
    if not request.logprobs:
        return ()
    logprob = -index / 4
    top = [TokenLogprob(piece, logprob, list(piece.encode()))]
    top += [TokenLogprob(f"alt{k}", logprob - k, list(f"alt{k}".encode())) for k in range(1, request.top_logprobs)]
    return (TokenLogprob(piece, logprob, list(piece.encode()), tuple(top[: request.top_logprobs])),)


def _tool_calls(request: GenerationRequest) -> list[ToolCallPart]:
    """The calls a tool-calling model makes here, each as two stream fragments: the named tool,
    else every offered tool (the first alone without parallel calls), with ``{"q": <last user text>}``."""
    tools = [tool["function"]["name"] for tool in request.tools or ()]
    choice = request.tool_choice
    if isinstance(choice, dict):
        tools = [choice["function"]["name"]]
    elif request.parallel_tool_calls is False:
        tools = tools[:1]
    question = next((m["content"] for m in reversed(request.messages) if m["role"] == "user"), "")
    arguments = json.dumps({"q": question})
    parts = []
    for index, name in enumerate(tools):
        parts.append(ToolCallPart(index, f"call_{index}_{name}", name, arguments[:6]))
        parts.append(ToolCallPart(index, arguments=arguments[6:]))
    return parts


class ScriptedEngine(ChatEngine):
    """Yields ``pieces`` one by one; can fail before or after the first piece, or stall.

    Offered tools (not declined), it calls them instead (see :func:`_tool_calls`).
    """

    def __init__(
        self,
        pieces: list[str] | None = None,
        *,
        model: str = "scripted",
        prompt_tokens: int = 5,
        fail_before: GatewayError | None = None,
        fail_after: int | None = None,
        delay_s: float = 0.0,
    ) -> None:
        self.pieces = pieces if pieces is not None else ["Hello", ",", " world"]
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.fail_before = fail_before
        self.fail_after = fail_after
        self.delay_s = delay_s
        self.requests: list[GenerationRequest] = []
        self.closed = 0
        self.started = False

    async def start(self) -> None:
        self.started = True

    async def stream(self, request: GenerationRequest) -> AsyncIterator[EngineDelta]:
        self.requests.append(request)
        try:
            if self.fail_before is not None:
                raise self.fail_before
            if request.calls_tools:
                calls = _tool_calls(request)
                for choice in range(request.n):
                    for index, part in enumerate(calls, 1):
                        finish = "tool_calls" if index == len(calls) else None
                        tokens = choice * len(calls) + index
                        yield EngineDelta(
                            "", finish, self.prompt_tokens, tokens, self.model, tool_calls=(part,), index=choice
                        )
                return
            pieces = self.pieces[: request.max_tokens]
            generated = 0
            for index, piece in enumerate(pieces, 1):
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                if self.fail_after is not None and index > self.fail_after:
                    raise RuntimeError("engine crashed mid-stream")
                finish = None
                if index == len(pieces):
                    finish = "length" if len(pieces) < len(self.pieces) else "stop"
                logprobs = _logprobs(request, piece, index)
                # With n > 1 the choices interleave; choice c's pieces end in "#c" (c > 0).
                for choice in range(request.n):
                    text = piece + (f"#{choice}" if choice and index == len(pieces) else "")
                    generated += 1
                    yield EngineDelta(text, finish, self.prompt_tokens, generated, self.model, logprobs, index=choice)
        finally:
            self.closed += 1
