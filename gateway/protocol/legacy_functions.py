"""OpenAI's legacy function calling, served as tool calling.

Chat Completions had ``functions`` before ``tools``. OpenAI still serves the old form and
the openai SDK still sends it, so older apps and frameworks use it. A legacy request is
rewritten into the tool-calling request it means (:func:`as_tool_calling`):

* ``functions`` become function ``tools``, and ``function_call`` (``"none"``, ``"auto"``
  or ``{"name": ...}``) becomes ``tool_choice``;
* an assistant turn's ``function_call`` becomes its one tool call, with an id made from the
  turn's position (legacy calls have none), and the ``function`` turn after it becomes the
  ``tool`` turn answering that id;
* legacy calls come one at a time, so ``parallel_tool_calls`` is off.

Routing, tiers, failover, cost, the ledger and the cache then treat it as the tool-calling
request it is. The answer goes back in the legacy shape (:func:`legacy_response`,
:func:`legacy_chunk`): one ``message.function_call`` (``delta.function_call`` in a stream)
instead of ``tool_calls``, and ``finish_reason: "function_call"``.
"""

from __future__ import annotations

from gateway.errors import InvalidRequestError
from gateway.protocol.chat import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatMessage,
    ChunkChoice,
)
from gateway.protocol.tools import (
    FunctionCall,
    FunctionCallDelta,
    NamedFunction,
    NamedToolChoice,
    ToolCall,
    ToolChoice,
    ToolDefinition,
)

__all__ = [
    "answers_in_legacy_shape",
    "as_tool_calling",
    "legacy_call_id",
    "legacy_chunk",
    "legacy_response",
    "uses_legacy_functions",
]


def uses_legacy_functions(request: ChatCompletionRequest) -> bool:
    """Whether ``request`` uses any legacy form, and so must be rewritten by :func:`as_tool_calling`."""
    return (
        request.functions is not None
        or request.function_call is not None
        or any(m.role == "function" or m.function_call is not None for m in request.messages)
    )


def answers_in_legacy_shape(request: ChatCompletionRequest) -> bool:
    """Whether calls in the answer go back as ``function_call``: the client offered legacy
    ``functions`` (a conversation with legacy turns that offers ``tools`` gets ``tool_calls``)."""
    return request.functions is not None


def legacy_call_id(position: int) -> str:
    """The tool-call id given to the legacy ``function_call`` of ``messages[position]``."""
    return f"call_legacy_{position}"


def as_tool_calling(request: ChatCompletionRequest) -> ChatCompletionRequest:
    """The tool-calling request a legacy one means; :class:`InvalidRequestError` naming the
    field where the two forms are mixed or a ``function`` turn answers no call."""
    if request.functions is not None and request.tools is not None:
        raise InvalidRequestError("send either 'tools' or the legacy 'functions', not both", param="functions")
    if request.function_call is not None and request.tool_choice is not None:
        raise InvalidRequestError(
            "send either 'tool_choice' or the legacy 'function_call', not both", param="function_call"
        )
    tools = request.tools
    if request.functions is not None:
        tools = [ToolDefinition(type="function", function=f) for f in request.functions]
    return request.model_copy(
        update={
            "messages": _messages(request.messages),
            "tools": tools,
            "tool_choice": _tool_choice(request),
            "parallel_tool_calls": False if request.functions else request.parallel_tool_calls,
            "functions": None,
            "function_call": None,
        }
    )


def _tool_choice(request: ChatCompletionRequest) -> ToolChoice | None:
    choice = request.function_call
    if not isinstance(choice, NamedFunction):
        return choice if choice is not None else request.tool_choice
    offered = [f.name for f in request.functions or ()]
    if choice.name not in offered:
        raise InvalidRequestError(
            f"function_call names {choice.name!r}, which is not among the functions", param="function_call"
        )
    return NamedToolChoice(type="function", function=choice)


def _messages(messages: list[ChatMessage]) -> list[ChatMessage]:
    rewritten: list[ChatMessage] = []
    # The legacy call a ``function`` turn may answer: the one just made, not yet answered.
    pending: tuple[str, str] | None = None
    for position, message in enumerate(messages):
        if message.role == "function":
            if pending is None or pending[1] != message.name:
                made = f"the call of {pending[1]!r} before it" if pending else "no function_call just before it"
                raise InvalidRequestError(
                    f"messages[{position}] is the result of function {message.name!r}, but the conversation has "
                    f"{made}; a function message follows the assistant's function_call it answers",
                    param=f"messages[{position}]",
                )
            rewritten.append(message.model_copy(update={"role": "tool", "tool_call_id": pending[0], "name": None}))
            pending = None
            continue
        pending = None
        if message.function_call is not None:
            call = ToolCall(id=legacy_call_id(position), type="function", function=message.function_call)
            pending = (call.id, message.function_call.name)
            message = message.model_copy(update={"tool_calls": [call], "function_call": None})
        rewritten.append(message)
    return rewritten


def legacy_response(response: ChatCompletionResponse) -> ChatCompletionResponse:
    """``response`` with each choice's tool call as the legacy ``function_call``."""
    choices = []
    for choice in response.choices:
        calls = choice.message.tool_calls
        if not calls:
            choices.append(choice)
            continue
        # One call: parallel calls are off for legacy requests, as legacy calls are one at a time.
        call = calls[0].function
        message = choice.message.model_copy(
            update={"tool_calls": None, "function_call": FunctionCall(name=call.name, arguments=call.arguments)}
        )
        choices.append(choice.model_copy(update={"message": message, "finish_reason": _finish(choice.finish_reason)}))
    return response.model_copy(update={"choices": choices})


def legacy_chunk(chunk: ChatCompletionChunk) -> ChatCompletionChunk:
    """A stream chunk with its tool-call fragments as legacy ``function_call`` fragments."""
    if not any(c.delta.tool_calls or c.finish_reason == "tool_calls" for c in chunk.choices):
        return chunk
    return chunk.model_copy(update={"choices": [_legacy_chunk_choice(c) for c in chunk.choices]})


def _legacy_chunk_choice(choice: ChunkChoice) -> ChunkChoice:
    delta = choice.delta
    if delta.tool_calls:
        # Fragments of the first call (index 0) only, as in legacy_response.
        parts = [part.function for part in delta.tool_calls if part.index == 0 and part.function is not None]
        name = next((p.name for p in parts if p.name is not None), None)
        arguments = "".join(p.arguments or "" for p in parts)
        fragment = FunctionCallDelta(name=name, arguments=arguments) if parts else None
        delta = delta.model_copy(update={"tool_calls": None, "function_call": fragment})
    return choice.model_copy(update={"delta": delta, "finish_reason": _finish(choice.finish_reason)})


def _finish(reason: str | None) -> str | None:
    return "function_call" if reason == "tool_calls" else reason
