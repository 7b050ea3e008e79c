"""Chat completions written as Responses API objects and stream events.

:class:`ResponseShell` holds what every response object repeats from its request (the
echoed parameters) and builds the object from the output items. A non-stream completion
becomes items with :func:`output_items`; a stream is rewritten event by event by
:class:`ResponseEventStream`, which ends with ``response.completed`` (or ``incomplete``, or
``error`` and ``response.failed``) carrying the whole response.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import GatewayError
from gateway.protocol import ChatCompletionResponse, ChoiceLogprobs, Usage
from gateway.protocol.responses import (
    FunctionCallItem,
    InputItem,
    InputMessage,
    ResponsesRequest,
    ResponseUsage,
)
from gateway.serving.streaming import ClosingStream, StreamItem

__all__ = [
    "TERMINAL_EVENTS",
    "ResponseEventStream",
    "ResponseShell",
    "assistant_turn",
    "event_frame",
    "frame_kind",
    "input_item_list",
    "listed_input_items",
    "output_items",
    "queued_events",
    "response_id",
]

logger = logging.getLogger(__name__)

#: Finish reasons that leave a response ``incomplete``, and the reason OpenAI gives.
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_id(chat_id: str) -> str:
    """The response id for a chat completion id (the same hex, so logs and ledgers correlate)."""
    return "resp_" + chat_id.removeprefix("chatcmpl-")


def _item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _message_item(text: str, status: str, logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "type": "message",
        "id": _item_id("msg"),
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs or []}],
    }


def _logprobs(logprobs: ChoiceLogprobs | None) -> list[dict[str, Any]]:
    # Chat's token entries have the Responses API's shape already: token, logprob, bytes, top_logprobs.
    if logprobs is None or not logprobs.content:
        return []
    return [token.model_dump(mode="json") for token in logprobs.content]


def _call_item(call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": _item_id("fc"),
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def output_items(response: ChatCompletionResponse) -> tuple[list[dict[str, Any]], str | None]:
    """A chat completion's first choice as output items, and its finish reason."""
    choice = response.choices[0]
    status = "incomplete" if choice.finish_reason in _INCOMPLETE else "completed"
    calls = choice.message.tool_calls or []
    items: list[dict[str, Any]] = []
    if choice.message.content or not calls:
        items.append(_message_item(choice.message.content or "", status, _logprobs(choice.logprobs)))
    items += [_call_item(c.id, c.function.name, c.function.arguments, status) for c in calls]
    return items, choice.finish_reason


def listed_input_items(items: Sequence[InputItem]) -> list[dict[str, Any]]:
    """A request's input items as ``GET /v1/responses/{id}/input_items`` lists them: each with an
    id, a status, and message text as ``input_text`` (``output_text`` for the assistant) parts."""
    listed: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, InputMessage):
            kind = "output_text" if item.role == "assistant" else "input_text"
            listed.append(
                {
                    "id": _item_id("msg"),
                    "type": "message",
                    "role": item.role,
                    "status": "completed",
                    "content": [{"type": kind, "text": item.text()}],
                }
            )
        elif isinstance(item, FunctionCallItem):
            listed.append(_call_item(item.call_id, item.name, item.arguments, "completed"))
        else:
            listed.append(
                {
                    "id": _item_id("fco"),
                    "type": "function_call_output",
                    "call_id": item.call_id,
                    "output": item.text(),
                    "status": "completed",
                }
            )
    return listed


def input_item_list(
    items: Sequence[dict[str, Any]], *, limit: int = 20, order: str = "desc", after: str | None = None
) -> dict[str, Any]:
    """One page of listed input items, as OpenAI's cursor list (newest first by default)."""
    ordered = list(items) if order == "asc" else list(reversed(items))
    if after is not None:
        ids = [item["id"] for item in ordered]
        ordered = ordered[ids.index(after) + 1 :] if after in ids else []
    page = ordered[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(ordered) > len(page),
    }


def assistant_turn(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Output items as the chat message a later ``previous_response_id`` request replays."""
    text = "".join(part["text"] for item in items if item["type"] == "message" for part in item["content"])
    calls = [
        {"id": item["call_id"], "type": "function", "function": {"name": item["name"], "arguments": item["arguments"]}}
        for item in items
        if item["type"] == "function_call"
    ]
    turn: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
    if calls:
        turn["tool_calls"] = calls
    return turn


def _usage(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    shaped = ResponseUsage(
        input_tokens=usage.prompt_tokens,
        input_tokens_details={"cached_tokens": (usage.prompt_tokens_details or {}).get("cached_tokens", 0)},
        output_tokens=usage.completion_tokens,
        output_tokens_details={"reasoning_tokens": (usage.completion_tokens_details or {}).get("reasoning_tokens", 0)},
        total_tokens=usage.total_tokens,
        slm_router=usage.slm_router,
    )
    return shaped.model_dump(exclude_none=True)


@dataclass
class ResponseShell:
    """The parts of a response object that echo its request."""

    id: str
    model: str
    request: ResponsesRequest
    #: Whether the response is kept (set false when storing it fails or is off).
    store: bool
    created_at: int = field(default_factory=lambda: int(time.time()))
    #: Model-specific parameters the answering model was not sent (``reasoning_effort``,
    #: ``verbosity``): the response reports them at their defaults, as what was in effect.
    dropped: frozenset[str] = frozenset()
    #: Created with ``background: true`` (answered at once, run on, polled with ``GET``).
    background: bool = False

    def build(
        self,
        output: list[dict[str, Any]],
        *,
        status: str,
        finish_reason: str | None = None,
        usage: Usage | None = None,
        error: GatewayError | None = None,
    ) -> dict[str, Any]:
        """The response object."""
        request = self.request
        fmt = request.text.format if request.text is not None and request.text.format is not None else None
        choice = request.tool_choice
        incomplete = _INCOMPLETE.get(finish_reason or "") if status == "incomplete" else None
        params = {name: value for name, value in request.model_params().items() if name not in self.dropped}
        return {
            "id": self.id,
            "object": "response",
            "background": self.background,
            "created_at": self.created_at,
            "completed_at": int(time.time()) if status == "completed" else None,
            "status": status,
            "error": {"code": error.code or "server_error", "message": error.message} if error else None,
            "incomplete_details": {"reason": incomplete} if incomplete else None,
            "instructions": request.instructions,
            "max_output_tokens": request.max_output_tokens,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": request.parallel_tool_calls is not False,
            "previous_response_id": request.previous_response_id,
            "conversation": {"id": request.conversation} if request.conversation else None,
            "reasoning": {"effort": params.get("reasoning_effort"), "summary": None},
            "store": self.store,
            "temperature": 1.0 if request.temperature is None else request.temperature,
            "text": {
                "format": fmt.model_dump(mode="json", exclude_none=True) if fmt else {"type": "text"},
                "verbosity": params.get("verbosity", "medium"),
            },
            "tool_choice": "auto" if choice is None else choice if isinstance(choice, str) else choice.model_dump(),
            "tools": [tool.model_dump(mode="json") for tool in request.tools or ()],
            "top_p": 1.0 if request.top_p is None else request.top_p,
            "top_logprobs": request.top_logprobs,
            "truncation": "disabled",
            "usage": _usage(usage),
            "user": request.user,
            "metadata": dict(request.metadata or {}),
        }

    def from_chat(self, response: ChatCompletionResponse) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A finished chat completion as the response object, and its output items."""
        items, finish_reason = output_items(response)
        status = "incomplete" if finish_reason in _INCOMPLETE else "completed"
        return self.build(items, status=status, finish_reason=finish_reason, usage=response.usage), items


#: The events that end a response stream.
TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def event_frame(kind: str, sequence: int, payload: dict[str, Any]) -> bytes:
    """One SSE frame of a response stream."""
    body = {"type": kind, "sequence_number": sequence, **payload}
    return f"event: {kind}\ndata: {json.dumps(body, separators=(',', ':'), ensure_ascii=False)}\n\n".encode()


def frame_kind(frame: bytes) -> str:
    """The event type of a frame made by :func:`event_frame`."""
    return frame[len(b"event: ") : frame.index(b"\n")].decode()


#: Called with the finished response object and its output items before the last event is
#: sent (so a client that chains on ``response.completed`` finds the response stored); it
#: returns whether the response was stored.
OnFinished = Callable[[dict[str, Any], list[dict[str, Any]]], Awaitable[bool]]
#: Called with the failed response object before ``response.failed`` is sent.
OnFailed = Callable[[dict[str, Any]], Awaitable[None]]


#: The events a background response's stream starts with, before its run begins.
_QUEUED = ("response.created", "response.queued")


def queued_events(response: dict[str, Any]) -> list[bytes]:
    """The first events of a streamed background response: ``response`` (``queued``) created
    and queued; its run's :class:`ResponseEventStream` (``after_queued``) goes on from them."""
    return [event_frame(kind, sequence, {"response": response}) for sequence, kind in enumerate(_QUEUED)]


@dataclass
class _OpenItem:
    output_index: int
    item: dict[str, Any]


class ResponseEventStream:
    """Rewrites a chat stream's chunks as Responses API events."""

    def __init__(
        self,
        shell: ResponseShell,
        on_finished: OnFinished | None = None,
        *,
        on_failed: OnFailed | None = None,
        after_queued: bool = False,
    ) -> None:
        """``after_queued``: the stream goes on from :func:`queued_events` (a background
        response), so it starts at ``response.in_progress``."""
        self._shell = shell
        self._on_finished = on_finished
        self._on_failed = on_failed
        self._after_queued = after_queued
        self._sequence = len(_QUEUED) if after_queued else 0
        self._items: list[dict[str, Any]] = []
        self._text: _OpenItem | None = None
        self._calls: dict[int, _OpenItem] = {}

    def _emit(self, kind: str, **payload: Any) -> bytes:
        frame = event_frame(kind, self._sequence, payload)
        self._sequence += 1
        return frame

    def events(self, chunks: AsyncIterator[StreamItem]) -> ClosingStream[bytes]:
        """The SSE events; closing them closes ``chunks`` (and so the generation), read or not."""
        return ClosingStream.over(self._events(chunks), chunks)

    async def _events(self, chunks: AsyncIterator[StreamItem]) -> AsyncGenerator[bytes]:
        shell = self._shell
        if not self._after_queued:
            yield self._emit("response.created", response=shell.build([], status="in_progress"))
        yield self._emit("response.in_progress", response=shell.build([], status="in_progress"))
        usage: Usage | None = None
        finish_reason: str | None = None
        async for chunk in chunks:
            if isinstance(chunk, GatewayError):
                for frame in self._close_items("incomplete"):
                    yield frame
                yield self._emit("error", code=chunk.code, message=chunk.message, param=chunk.param)
                failed = shell.build(self._items, status="failed", error=chunk)
                if self._on_failed is not None:
                    await self._on_failed(failed)
                yield self._emit("response.failed", response=failed)
                return
            usage = chunk.usage or usage
            for choice in chunk.choices:
                if choice.index != 0:
                    continue
                tokens = _logprobs(choice.logprobs)
                if choice.delta.content or tokens:
                    for frame in self._text_delta(choice.delta.content or "", tokens):
                        yield frame
                for part in choice.delta.tool_calls or ():
                    for frame in self._call_delta(part.index, part.id, part.function):
                        yield frame
                finish_reason = choice.finish_reason or finish_reason
        status = "incomplete" if finish_reason in _INCOMPLETE else "completed"
        if not self._items:
            for frame in self._text_delta(""):
                yield frame
        for frame in self._close_items(status):
            yield frame
        final = shell.build(self._items, status=status, finish_reason=finish_reason, usage=usage)
        if self._on_finished is not None:
            try:
                shell.store = await self._on_finished(final, self._items)
            except Exception:
                # The answer is whole and paid for: it is sent, only not kept.
                logger.exception("response %s could not be stored", shell.id)
                shell.store = False
            final["store"] = shell.store
        yield self._emit(f"response.{status}", response=final)

    def _text_delta(self, text: str, logprobs: list[dict[str, Any]] | None = None) -> list[bytes]:
        frames: list[bytes] = []
        if self._text is None:
            item = _message_item("", "in_progress")
            item["content"] = []
            self._text = _OpenItem(len(self._items), item)
            self._items.append(item)
            frames.append(self._emit("response.output_item.added", output_index=self._text.output_index, item=item))
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            item["content"].append(part)
            frames.append(
                self._emit(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=self._text.output_index,
                    content_index=0,
                    part=part,
                )
            )
        open_item = self._text
        part = open_item.item["content"][0]
        part["text"] += text
        part["logprobs"] += logprobs or []
        if text:
            frames.append(
                self._emit(
                    "response.output_text.delta",
                    item_id=open_item.item["id"],
                    output_index=open_item.output_index,
                    content_index=0,
                    delta=text,
                    logprobs=logprobs or [],
                )
            )
        return frames

    def _call_delta(self, index: int, call_id: str | None, function: Any) -> list[bytes]:
        frames: list[bytes] = []
        name = getattr(function, "name", None)
        arguments = getattr(function, "arguments", None) or ""
        open_item = self._calls.get(index)
        if open_item is None:
            item = _call_item(call_id or _item_id("call"), name or "", "", "in_progress")
            open_item = _OpenItem(len(self._items), item)
            self._calls[index] = open_item
            self._items.append(item)
            frames.append(self._emit("response.output_item.added", output_index=open_item.output_index, item=item))
        elif name:
            open_item.item["name"] += name
        if arguments:
            open_item.item["arguments"] += arguments
            frames.append(
                self._emit(
                    "response.function_call_arguments.delta",
                    item_id=open_item.item["id"],
                    output_index=open_item.output_index,
                    delta=arguments,
                )
            )
        return frames

    def _close_items(self, status: str) -> list[bytes]:
        frames: list[bytes] = []
        opened = ([self._text] if self._text is not None else []) + list(self._calls.values())
        for open_item in sorted(opened, key=lambda o: o.output_index):
            item = open_item.item
            if item["status"] != "in_progress":
                continue
            item["status"] = status
            where = {"item_id": item["id"], "output_index": open_item.output_index}
            if item["type"] == "message":
                part = item["content"][0]
                text, logprobs = part["text"], part["logprobs"]
                frames.append(
                    self._emit("response.output_text.done", **where, content_index=0, text=text, logprobs=logprobs)
                )
                frames.append(self._emit("response.content_part.done", **where, content_index=0, part=part))
            else:
                frames.append(
                    self._emit(
                        "response.function_call_arguments.done", **where, name=item["name"], arguments=item["arguments"]
                    )
                )
            frames.append(self._emit("response.output_item.done", output_index=open_item.output_index, item=item))
        return frames
