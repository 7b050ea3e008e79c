"""Tool calling on the wire: definitions, ``tool_choice``, calls and their stream fragments.

The request side is validated as OpenAI validates it, so that a client's mistake is a 400
here rather than an upstream's 400 turned into a 502: names follow OpenAI's pattern, at
most 128 tools with distinct names, a named ``tool_choice`` must name an offered tool, and
the conversation must pair every assistant tool call with a ``tool`` message answering it
(:func:`check_tool_use`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, Protocol

from pydantic import Field

from gateway.errors import InvalidRequestError
from gateway.protocol._base import OmitNone, Tolerant

__all__ = [
    "MAX_TOOLS",
    "FunctionCall",
    "FunctionCallDelta",
    "FunctionDefinition",
    "NamedFunction",
    "NamedToolChoice",
    "ToolCall",
    "ToolCallDelta",
    "ToolChoice",
    "ToolDefinition",
    "ToolNeed",
    "check_tool_use",
]

#: OpenAI's limit on ``tools``.
MAX_TOOLS = 128
#: OpenAI's rule for function names.
FUNCTION_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"


class FunctionDefinition(Tolerant):
    """``tools[i].function``: a name, and optionally a description and a JSON Schema."""

    name: Annotated[str, Field(pattern=FUNCTION_NAME_PATTERN)]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDefinition(Tolerant):
    """One entry of ``tools`` (only ``function`` tools exist in Chat Completions)."""

    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(Tolerant):
    """``tool_choice.function`` (and the legacy ``function_call`` naming a function)."""

    name: str = Field(min_length=1)


class NamedToolChoice(Tolerant):
    """``tool_choice`` forcing one tool: ``{"type": "function", "function": {"name": ...}}``."""

    type: Literal["function"]
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice

#: What tool calling serving a request takes: none; one call that ``tool_choice`` forces (by
#: naming a function, or ``required`` with one function offered), in a conversation without
#: tool turns (decoding constrained to the function's schema makes it, so any model can); or
#: a model with tool calling.
ToolNeed = Literal["none", "forced", "any"]


class FunctionCall(Tolerant):
    """The function a tool call invokes; ``arguments`` is JSON text, as the model wrote it."""

    name: str
    arguments: str


class ToolCall(Tolerant):
    """An assistant message's ``tool_calls`` item (in requests and in responses)."""

    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: FunctionCall


class FunctionCallDelta(OmitNone):
    """The function part of a stream fragment (unset fields left out, as OpenAI does)."""

    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(OmitNone):
    """A ``delta.tool_calls`` item: fragments with the same ``index`` make one call."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta | None = None


class _Message(Protocol):
    @property
    def role(self) -> str: ...
    @property
    def tool_calls(self) -> list[ToolCall] | None: ...
    @property
    def tool_call_id(self) -> str | None: ...


def check_tool_use(
    tools: Sequence[ToolDefinition] | None, tool_choice: ToolChoice | None, messages: Sequence[_Message]
) -> None:
    """Raise :class:`InvalidRequestError` (naming the field) where OpenAI would refuse the request."""
    names = [tool.function.name for tool in tools or ()]
    if len(names) > MAX_TOOLS:
        raise InvalidRequestError(f"at most {MAX_TOOLS} tools are allowed, got {len(names)}", param="tools")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InvalidRequestError(f"tool names must be unique; repeated: {', '.join(duplicates)}", param="tools")
    if tool_choice is not None and tool_choice not in ("none", "auto") and not names:
        raise InvalidRequestError("tool_choice needs 'tools' to choose from", param="tool_choice")
    if isinstance(tool_choice, NamedToolChoice) and tool_choice.function.name not in names:
        raise InvalidRequestError(
            f"tool_choice names {tool_choice.function.name!r}, which is not among the tools", param="tool_choice"
        )
    _check_pairing(messages)


def _check_pairing(messages: Sequence[_Message]) -> None:
    # Every tool call is answered by a tool message before the conversation goes on, and
    # every tool message answers a call of the assistant turn just before it.
    pending: dict[str, int] = {}
    for position, message in enumerate(messages):
        if message.role == "tool":
            call_id = message.tool_call_id or ""
            if call_id not in pending:
                raise InvalidRequestError(
                    f"messages[{position}] answers tool call {call_id!r}, "
                    "which the assistant turn before it did not make",
                    param=f"messages[{position}].tool_call_id",
                )
            del pending[call_id]
            continue
        if pending:
            unanswered = ", ".join(sorted(pending))
            raise InvalidRequestError(
                f"the assistant's tool calls in messages[{min(pending.values())}] need a tool message each "
                f"before messages[{position}]; unanswered: {unanswered}",
                param=f"messages[{position}]",
            )
        if message.role == "assistant" and message.tool_calls:
            ids = [call.id for call in message.tool_calls]
            if len(set(ids)) != len(ids):
                raise InvalidRequestError(
                    f"messages[{position}] repeats a tool call id", param=f"messages[{position}].tool_calls"
                )
            pending = dict.fromkeys(ids, position)
    if pending:
        raise InvalidRequestError(
            f"the assistant's tool calls in messages[{min(pending.values())}] need a tool message each; "
            f"unanswered: {', '.join(sorted(pending))}",
            param="messages",
        )
