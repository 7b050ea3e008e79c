"""Tool calling on a vLLM tier whose model has it: the model's own syntax, read by vLLM's parsers.

A tier with ``tool_call_parser`` set serves every kind of tool use. Its chat template renders
``tools`` and the conversation's tool turns, and the output becomes OpenAI tool calls:

- ``auto``: the model decides. vLLM's tool parser of that name (its server's
  ``--tool-call-parser``) reads the model's own call syntax (Hermes' ``<tool_call>`` JSON,
  Llama's JSON, pythonic lists, ...) while the text streams; text outside calls streams as
  content (:class:`ParsedToolCalls`).
- ``required`` among several functions: decoding is constrained to a JSON array of calls, as
  vLLM's server does it, so the answer is always one or more valid calls (:class:`RequiredToolCalls`).
- a named function (or ``required`` with one offered): decoding is constrained to its
  parameters, as on tiers without tool calling (:mod:`deployments.vllm_engine`).

vLLM is imported only by the functions that need it, as in :mod:`deployments.vllm_engine`.
"""

from __future__ import annotations

import json
import uuid
from abc import ABC, abstractmethod
from typing import Any

from gateway.engine import GenerationRequest, ToolCallPart
from gateway.errors import ConfigError

__all__ = [
    "ParsedToolCalls",
    "RequiredToolCalls",
    "ToolCallReader",
    "function_parameters",
    "load_tool_parser",
    "named_function",
    "new_call_id",
    "required_calls_schema",
    "template_messages",
]


def new_call_id() -> str:
    """A tool call id in OpenAI's form (``call_`` and 24 characters)."""
    return f"call_{uuid.uuid4().hex[:24]}"


def load_tool_parser(name: str) -> type[Any]:
    """vLLM's tool parser class registered as ``name``; :class:`ConfigError` listing the known
    names when there is none (raised at engine start-up, before any request)."""
    from vllm.tool_parsers import ToolParserManager

    try:
        parser: type[Any] = ToolParserManager.get_tool_parser(name)
    except KeyError:
        known = ", ".join(sorted(ToolParserManager.list_registered()))
        raise ConfigError(f"tool_call_parser {name!r} is not one of vLLM's tool parsers: {known}") from None
    return parser


def function_parameters(function: dict[str, Any]) -> dict[str, Any]:
    """A function's parameters schema; a function without parameters takes an empty object,
    as OpenAI's models send."""
    parameters: dict[str, Any] = function.get("parameters") or {"type": "object", "properties": {}}
    return parameters


def named_function(request: GenerationRequest) -> dict[str, Any] | None:
    """The function whose one call ``tool_choice`` forces on a tier with tool calling: the one it
    names, or the only one offered under ``required`` (tool turns allowed: the template renders them)."""
    tools: list[dict[str, Any]] = [tool["function"] for tool in request.tools or ()]
    choice = request.tool_choice
    if isinstance(choice, dict):
        name = choice.get("function", {}).get("name")
        return next((function for function in tools if function["name"] == name), None)
    if choice == "required" and len(tools) == 1:
        return tools[0]
    return None


def required_calls_schema(request: GenerationRequest) -> dict[str, Any]:
    """The JSON Schema of ``required`` among several functions, as vLLM's own server builds it:
    an array of one or more ``{"name", "parameters"}`` calls (one at most when
    ``parallel_tool_calls`` is false), the functions' ``$defs`` gathered at the top, where
    their ``$ref``s point. Conflicting ``$defs`` raise vLLM's client error (a 400)."""
    from vllm.tool_parsers.utils import get_json_schema_from_tools

    schema = get_json_schema_from_tools("required", _vllm_request(request).tools, request.parallel_tool_calls)
    assert isinstance(schema, dict)  # "required" with tools always has one
    return schema


def template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` as tool-calling chat templates take them: an assistant turn's call arguments
    as a JSON object rather than JSON text (Transformers' convention, which vLLM's server
    follows too), and no ``None`` content, which templates concatenate."""
    rendered: list[dict[str, Any]] = []
    for message in messages:
        message = {**message, "content": message.get("content") or ""}
        if message.get("tool_calls"):
            message["tool_calls"] = [_with_object_arguments(call) for call in message["tool_calls"]]
        rendered.append(message)
    return rendered


def _with_object_arguments(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    try:
        arguments = json.loads(function.get("arguments") or "{}")
    except ValueError:
        return call  # not JSON: the template gets it as it came
    return {**call, "function": {**function, "arguments": arguments}}


class ToolCallReader(ABC):
    """Turns one choice's generated text into content and tool calls, piece by piece."""

    #: Whether any tool call has been emitted (the choice then finishes with ``tool_calls``).
    called = False

    @abstractmethod
    def feed(self, text: str, token_ids: list[int]) -> tuple[str, tuple[ToolCallPart, ...]]:
        """Content and call fragments for the next generated piece."""

    @abstractmethod
    def finish(self, reason: str | None) -> tuple[str, tuple[ToolCallPart, ...]]:
        """What is left to send once the choice has finished for ``reason``."""


class ParsedToolCalls(ToolCallReader):
    """``auto``: a vLLM tool parser reads the model's own call syntax as it streams."""

    def __init__(
        self, parser_class: type[Any], tokenizer: Any, request: GenerationRequest, vllm_request: Any = None
    ) -> None:
        # Parsers keep state, so each choice has its own; they only read vLLM's request.
        self._request = vllm_request if vllm_request is not None else _vllm_request(request)
        self._parser = parser_class(tokenizer, self._request.tools)
        self._parser.adjust_request(self._request)
        self._single = request.parallel_tool_calls is False
        self._text = ""
        self._token_ids: list[int] = []
        self._sent_content = ""
        self._ids: dict[int, str] = {}

    @classmethod
    def for_choices(
        cls, parser_class: type[Any], tokenizer: Any, request: GenerationRequest, choices: int
    ) -> list[ParsedToolCalls]:
        """One reader per choice, sharing one translation of the request."""
        shared = _vllm_request(request)
        return [cls(parser_class, tokenizer, request, shared) for _ in range(choices)]

    @property
    def skip_special_tokens(self) -> bool:
        """Whether decoding may drop special tokens (some models' call markers are special tokens)."""
        return bool(self._request.skip_special_tokens)

    def feed(self, text: str, token_ids: list[int]) -> tuple[str, tuple[ToolCallPart, ...]]:
        previous_text, previous_ids = self._text, self._token_ids
        self._text, self._token_ids = previous_text + text, previous_ids + list(token_ids)
        delta = self._parser.extract_tool_calls_streaming(
            previous_text, self._text, text, previous_ids, self._token_ids, list(token_ids), self._request
        )
        if delta is None:
            return "", ()
        content = delta.content or ""
        self._sent_content += content
        return content, self._parts(delta.tool_calls or ())

    def finish(self, reason: str | None) -> tuple[str, tuple[ToolCallPart, ...]]:
        if self.called:
            # A parser may hold back the end of the last call's arguments until it knows the
            # call is complete; what it parsed but did not send goes out now.
            rest = self._parser.get_remaining_unstreamed_args()
            return "", (ToolCallPart(len(self._ids) - 1, arguments=rest),) if rest else ()
        # Without a call, text a parser held back as the possible start of one is content.
        if self._text.startswith(self._sent_content) and len(self._text) > len(self._sent_content):
            rest = self._text[len(self._sent_content) :]
            self._sent_content = self._text
            return rest, ()
        return "", ()

    def _parts(self, deltas: Any) -> tuple[ToolCallPart, ...]:
        parts: list[ToolCallPart] = []
        for delta in deltas:
            if self._single and delta.index > 0:
                continue  # parallel_tool_calls: false promises one call at most
            function = delta.function
            name = function.name if function is not None else None
            arguments = (function.arguments if function is not None else None) or ""
            first = delta.index not in self._ids
            call_id = self._ids.setdefault(delta.index, new_call_id())
            if not (first or arguments):
                continue
            parts.append(ToolCallPart(delta.index, call_id if first else None, name if first else None, arguments))
        if parts:
            self.called = True
        return tuple(parts)


class RequiredToolCalls(ToolCallReader):
    """``required`` among several functions: the constrained JSON array, read when complete."""

    def __init__(self) -> None:
        self._text = ""

    def feed(self, text: str, token_ids: list[int]) -> tuple[str, tuple[ToolCallPart, ...]]:
        self._text += text
        return "", ()

    def finish(self, reason: str | None) -> tuple[str, tuple[ToolCallPart, ...]]:
        try:
            calls = json.loads(self._text)
        except ValueError:
            # Cut short (max_tokens): what was generated goes out as it is, finishing "length".
            return self._text, ()
        self.called = True
        return "", tuple(
            ToolCallPart(index, new_call_id(), call["name"], json.dumps(call["parameters"], ensure_ascii=False))
            for index, call in enumerate(calls)
        )


def _vllm_request(request: GenerationRequest) -> Any:
    """The request as vLLM's own Chat Completions model, which its tool parsers read."""
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

    body: dict[str, Any] = {"model": "tier", "messages": request.messages}
    for name in ("tools", "tool_choice", "parallel_tool_calls"):
        if (value := getattr(request, name)) is not None:
            body[name] = value
    return ChatCompletionRequest.model_validate(body)
