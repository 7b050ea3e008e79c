"""A Responses API request as the chat-completion request the gateway serves.

``instructions`` become the first (developer) message; the stored conversation of
``previous_response_id`` follows, then the input items: messages as they are,
``function_call`` items as the assistant's tool calls, ``function_call_output`` items as
tool messages. Tool pairing is checked here, on the items, so that errors name
``input[i]`` rather than chat messages the client never sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from gateway.errors import InvalidRequestError
from gateway.protocol import ChatCompletionRequest
from gateway.protocol.responses import (
    FunctionCallItem,
    FunctionCallOutputItem,
    InputItem,
    InputMessage,
    ResponsesRequest,
)

__all__ = ["ChatForm", "chat_form", "history_messages", "pending_calls"]

_STORED_ITEMS: TypeAdapter[list[InputItem]] = TypeAdapter(list[InputItem])


@dataclass(frozen=True)
class ChatForm:
    """The chat request to serve, and the conversation to store with its answer."""

    request: ChatCompletionRequest
    #: History plus this input as chat messages, without ``instructions`` (which, as in
    #: OpenAI's API, do not carry over to a later response).
    conversation: list[dict[str, Any]]


def pending_calls(conversation: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Tool calls (id -> name) at the end of ``conversation`` that no tool message answers yet."""
    pending: dict[str, str] = {}
    for message in conversation:
        if message.get("role") == "tool":
            pending.pop(str(message.get("tool_call_id")), None)
        elif message.get("tool_calls"):
            pending = {call["id"]: call["function"]["name"] for call in message["tool_calls"]}
        else:
            pending = {}
    return pending


def _check_pairing(items: Sequence[InputItem], pending: dict[str, str]) -> None:
    # OpenAI's rules: every call gets its output before the conversation goes on, and every
    # output answers a call of the turn just before it.
    pending = dict(pending)
    previous: InputItem | None = None
    for position, item in enumerate(items):
        if isinstance(item, FunctionCallOutputItem):
            if item.call_id not in pending:
                raise InvalidRequestError(
                    f"No tool call found for function call output with call_id {item.call_id!r} (input[{position}]).",
                    param=f"input[{position}].call_id",
                )
            del pending[item.call_id]
        elif isinstance(item, FunctionCallItem):
            if pending and not isinstance(previous, FunctionCallItem):
                raise _unanswered(pending, f"input[{position}]")
            if item.call_id in pending:
                raise InvalidRequestError(
                    f"input[{position}] repeats the call_id {item.call_id!r}", param=f"input[{position}].call_id"
                )
            pending[item.call_id] = item.name
        elif pending:
            raise _unanswered(pending, f"input[{position}]")
        previous = item
    if pending:
        raise _unanswered(pending, "input")


def _unanswered(pending: dict[str, str], param: str) -> InvalidRequestError:
    calls = ", ".join(f"{call_id!r} ({name})" for call_id, name in sorted(pending.items()))
    return InvalidRequestError(f"No tool output found for function call {calls}.", param=param)


def _messages(items: Sequence[InputItem]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, InputMessage):
            messages.append({"role": item.role, "content": item.text()})
        elif isinstance(item, FunctionCallItem):
            call = {
                "id": item.call_id,
                "type": "function",
                "function": {"name": item.name, "arguments": item.arguments},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" not in last:
                last["tool_calls"] = [call]  # the text the model wrote before calling
            elif last is not None and last["role"] == "assistant":
                last["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        else:
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": item.text()})
    return messages


def history_messages(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored items (a conversation's) as the chat messages a response after them continues."""
    return _messages(_STORED_ITEMS.validate_python(list(items)))


def chat_form(request: ResponsesRequest, history: Sequence[dict[str, Any]] = ()) -> ChatForm:
    """The chat-completion request for ``request``, after ``history`` (a stored conversation)."""
    _check_pairing(request.input, pending_calls(history))
    conversation = [*history, *_messages(request.input)]
    messages = ([{"role": "developer", "content": request.instructions}] if request.instructions else []) + conversation
    body: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "stream": bool(request.stream),
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_completion_tokens": request.max_output_tokens,
        "parallel_tool_calls": request.parallel_tool_calls,
        "user": request.user,
        # A response the client asked not to keep is not captured for labelling either.
        "store": False if request.store is False else None,
        "router_threshold": request.router_threshold,
        **request.model_params(),
    }
    if request.stream:
        body["stream_options"] = {"include_usage": True}
    if request.wants_logprobs():
        body["logprobs"] = True
        body["top_logprobs"] = request.top_logprobs
    if request.tools:
        body["tools"] = [
            {"type": "function", "function": tool.model_dump(exclude={"type"}, exclude_none=True)}
            for tool in request.tools
        ]
    choice = request.tool_choice
    if choice is not None:
        body["tool_choice"] = (
            choice if isinstance(choice, str) else {"type": "function", "function": {"name": choice.name}}
        )
    fmt = request.format()
    if fmt is not None:
        body["response_format"] = fmt.response_format().model_dump(mode="json", exclude_none=True)
    try:
        chat = ChatCompletionRequest.model_validate({k: v for k, v in body.items() if v is not None})
    except ValidationError as exc:
        # Everything was validated on the Responses side; what is left is history that no
        # longer reads as a conversation, which the client cannot fix field by field.
        raise InvalidRequestError(f"the conversation cannot be served: {exc.errors()[0]['msg']}") from None
    return ChatForm(request=chat, conversation=conversation)
