"""The narrow interface between the gateway and a model backend.

A :class:`ChatEngine` turns a :class:`GenerationRequest` (already validated and
normalised) into a stream of :class:`EngineDelta` pieces. vLLM sits behind it in
production and in tests; a hosted model sits behind the same shape through litellm.
Both types are plain dataclasses so they cross Ray's process boundary cheaply.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import ConfigError
from gateway.protocol.model_params import MODEL_PARAMS

__all__ = [
    "MIN_LOGPROB",
    "ChatEngine",
    "Completion",
    "CompletionChoice",
    "EngineDelta",
    "GenerationRequest",
    "TokenLogprob",
    "ToolCallPart",
    "collect_completion",
    "import_engine_class",
    "logprobs_from_openai",
    "merge_tool_calls",
    "openai_field",
    "tool_calls_from_openai",
]


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A chat generation request in the gateway's own terms."""

    request_id: str
    #: ``[{"role": ..., "content": str}, ...]`` with array contents already joined; an
    #: assistant turn may carry ``tool_calls`` (its content then may be ``None``) and a
    #: ``tool`` turn carries ``tool_call_id``, both in OpenAI's shape.
    messages: list[dict[str, Any]]
    max_tokens: int
    #: How many choices to generate (OpenAI's ``n``); each gets up to ``max_tokens``.
    n: int = 1
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    user: str | None = None
    #: Return each output token's log probability, with ``top_logprobs`` alternatives (0-20).
    logprobs: bool = False
    top_logprobs: int = 0
    #: ``None`` for text, else OpenAI's ``response_format`` (``{"type": "json_object"}`` or
    #: ``{"type": "json_schema", "json_schema": {"name", "schema", ...}}``), already validated.
    response_format: dict[str, Any] | None = None
    #: OpenAI tool definitions (``[{"type": "function", "function": {...}}]``), already validated;
    #: only engines of tiers that support tool calling receive them.
    tools: list[dict[str, Any]] | None = None
    #: ``"none"``, ``"auto"``, ``"required"`` or ``{"type": "function", "function": {"name": ...}}``.
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    #: The function (``tools[i].function``) whose one call ``tool_choice`` forces, set by the
    #: gateway for a tier that makes that call by constrained decoding though it has no tool
    #: calling (:meth:`gateway.protocol.ChatCompletionRequest.forced_function`); else ``None``.
    forced_function: dict[str, Any] | None = None
    #: OpenAI's ``logit_bias``: token id (a decimal string) to bias, in the tier's own tokenizer.
    logit_bias: dict[str, float] | None = None
    #: OpenAI's ``reasoning_effort`` and ``verbosity``, and vLLM's sampling extensions, set
    #: only for a tier whose model takes them (:mod:`gateway.protocol.model_params`).
    reasoning_effort: str | None = None
    verbosity: str | None = None
    ignore_eos: bool | None = None
    min_tokens: int | None = None
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    #: Continue ``messages[-1]["content"]`` as plain text, without the chat template
    #: (``/v1/completions``); only engines of tiers that complete text receive it.
    raw_prompt: bool = False
    #: vLLM's ``StructuredOutputsParams`` keywords (one constraint: ``json``, ``regex``,
    #: ``choice``, ``grammar`` or ``json_object``), already validated; only engines of tiers that
    #: constrain decoding receive it.
    structured_outputs: dict[str, Any] | None = None
    #: vLLM's other decoding extensions, for the same tiers: token ids (the model's) that end
    #: the answer, the only token ids it may use, and words it must not contain.
    stop_token_ids: list[int] | None = None
    allowed_token_ids: list[int] | None = None
    bad_words: list[str] | None = None
    #: W3C trace context (``traceparent``/``tracestate``) to pass to the model upstream.
    trace_headers: dict[str, str] = field(default_factory=dict)

    def openai_optional_fields(self) -> dict[str, Any]:
        """The optional fields that are set (sampling, ``user``, ``response_format``, tools, the
        model-specific parameters), named as in OpenAI's Chat Completions API."""
        fields: dict[str, Any] = {
            name: value
            for name in (
                "temperature",
                "top_p",
                "seed",
                "presence_penalty",
                "frequency_penalty",
                "user",
                "response_format",
                "logit_bias",
                "tool_choice",
                "parallel_tool_calls",
                *MODEL_PARAMS,
            )
            if (value := getattr(self, name)) is not None
        }
        if self.stop:
            fields["stop"] = list(self.stop)
        if self.n > 1:
            fields["n"] = self.n
        if self.tools:
            fields["tools"] = list(self.tools)
        if self.logprobs:
            fields["logprobs"] = True
            if self.top_logprobs:
                fields["top_logprobs"] = self.top_logprobs
        return fields

    def vllm_decoding_fields(self) -> dict[str, Any]:
        """vLLM's decoding extensions that are set, as a vLLM server reads them from a body
        (only tiers that take them are sent a request with them)."""
        names = ("structured_outputs", "stop_token_ids", "allowed_token_ids", "bad_words")
        return {name: value for name in names if (value := getattr(self, name)) is not None}

    @property
    def calls_tools(self) -> bool:
        """Whether the model may answer with tool calls (tools offered and not declined)."""
        return bool(self.tools) and self.tool_choice != "none"

    @property
    def needs_tool_calling(self) -> bool:
        """Whether only a model with tool calling can serve this: it may call tools, or the
        conversation holds tool calls and their results."""
        return self.calls_tools or any(m["role"] == "tool" or m.get("tool_calls") for m in self.messages)


def openai_field(item: Any, name: str) -> Any:
    """Field ``name`` of an upstream's object, which arrives as a dict (raw JSON) or as an SDK
    object (litellm, openai); ``None`` when missing, or when ``item`` is ``None``."""
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


#: What OpenAI reports for a log probability of minus infinity (JSON has no infinities).
MIN_LOGPROB = -9999.0


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One output token's log probability and, for a generated token, its top alternatives.

    ``bytes`` is the token's UTF-8 encoding (``None`` when the engine does not know it).
    """

    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: tuple[TokenLogprob, ...] = ()

    def to_openai(self, *, top: bool = True) -> dict[str, Any]:
        """OpenAI's ``ChatCompletionTokenLogprob`` shape (``top_logprobs`` items leave it out)."""
        data: dict[str, Any] = {"token": self.token, "logprob": self.logprob, "bytes": self.bytes}
        if top:
            data["top_logprobs"] = [alt.to_openai(top=False) for alt in self.top_logprobs]
        return data

    @classmethod
    def from_openai(cls, data: Any) -> TokenLogprob:
        """From an upstream's ``ChatCompletionTokenLogprob`` (a dict or an SDK object)."""
        raw_bytes = openai_field(data, "bytes")
        logprob = openai_field(data, "logprob")
        return cls(
            token=str(openai_field(data, "token") or ""),
            logprob=float(logprob) if logprob is not None else MIN_LOGPROB,
            bytes=[int(b) for b in raw_bytes] if raw_bytes is not None else None,
            top_logprobs=tuple(cls.from_openai(alt) for alt in openai_field(data, "top_logprobs") or ()),
        )


def logprobs_from_openai(choice_logprobs: Any) -> tuple[TokenLogprob, ...]:
    """The tokens of an upstream choice's ``logprobs`` (``{"content": [...]}``, a dict or an SDK object)."""
    if choice_logprobs is None:
        return ()
    content = openai_field(choice_logprobs, "content")
    return tuple(TokenLogprob.from_openai(item) for item in content or ())


@dataclass(frozen=True, slots=True)
class ToolCallPart:
    """A tool call the model made, or, in a stream, a fragment of one.

    Fragments with the same ``index`` belong to one call: the first carries ``id`` and
    ``name``, and the ``arguments`` strings (JSON text) concatenate, as in OpenAI's stream.
    """

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""

    def to_openai(self) -> dict[str, Any]:
        """OpenAI's ``tool_calls`` item of a whole call."""
        return {
            "id": self.id or f"call_{self.index}",
            "type": "function",
            "function": {"name": self.name or "", "arguments": self.arguments},
        }

    def to_openai_delta(self) -> dict[str, Any]:
        """OpenAI's ``delta.tool_calls`` item of a fragment (unset fields left out)."""
        function: dict[str, Any] = {"arguments": self.arguments}
        if self.name is not None:
            function["name"] = self.name
        data: dict[str, Any] = {"index": self.index, "function": function}
        if self.id is not None:
            data["id"] = self.id
            data["type"] = "function"
        return data

    @classmethod
    def from_openai(cls, data: Any, position: int) -> ToolCallPart:
        """From an upstream's ``tool_calls`` item or stream fragment (a dict or an SDK object);
        ``position`` is the index when the item has none (a non-stream message's list)."""
        function = openai_field(data, "function")
        index = openai_field(data, "index")
        call_id = openai_field(data, "id")
        name = openai_field(function, "name") if function is not None else None
        arguments = openai_field(function, "arguments") if function is not None else None
        return cls(
            index=int(index) if isinstance(index, int) else position,
            id=str(call_id) if call_id else None,
            name=str(name) if name else None,
            arguments=str(arguments or ""),
        )


def tool_calls_from_openai(items: Any) -> tuple[ToolCallPart, ...]:
    """The parts of an upstream message's or delta's ``tool_calls`` (``None`` gives none)."""
    return tuple(ToolCallPart.from_openai(item, position) for position, item in enumerate(items or ()))


def merge_tool_calls(parts: Iterable[ToolCallPart]) -> tuple[ToolCallPart, ...]:
    """Join stream fragments into whole calls, by index (first id and name win)."""
    calls: dict[int, ToolCallPart] = {}
    for part in parts:
        seen = calls.get(part.index)
        if seen is None:
            calls[part.index] = part
        else:
            calls[part.index] = ToolCallPart(
                part.index, seen.id or part.id, seen.name or part.name, seen.arguments + part.arguments
            )
    return tuple(calls[index] for index in sorted(calls))


@dataclass(frozen=True, slots=True)
class EngineDelta:
    """One streamed piece of a completion, of choice ``index`` (0 unless ``n > 1``).

    ``prompt_tokens`` and ``completion_tokens`` are running totals over all choices (the
    prompt counted once, as OpenAI counts it), so the last delta carries the final usage.
    A choice is over with its first delta that has a ``finish_reason``.
    """

    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: The concrete model that produced the text.
    model: str = ""
    #: The log probabilities of this piece's tokens, when the request asked for them.
    logprobs: tuple[TokenLogprob, ...] = ()
    #: Tool-call fragments in this piece (see :class:`ToolCallPart`).
    tool_calls: tuple[ToolCallPart, ...] = ()
    #: Which choice this piece belongs to.
    index: int = 0
    #: Of ``completion_tokens``, those a reasoning model spent thinking; of ``prompt_tokens``,
    #: those the provider served from its prompt cache (running totals, as reported upstream).
    reasoning_tokens: int = 0
    cached_tokens: int = 0


@dataclass(frozen=True, slots=True)
class CompletionChoice:
    """One whole choice of a completion."""

    index: int
    text: str
    finish_reason: str | None
    logprobs: tuple[TokenLogprob, ...] = ()
    tool_calls: tuple[ToolCallPart, ...] = ()


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole completion, the result of a non-stream call.

    The fields describe choice 0; with ``n > 1`` the others are in ``extra_choices`` and the
    token counts cover every choice.
    """

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    model: str
    #: Every output token's log probability, when the request asked for them.
    logprobs: tuple[TokenLogprob, ...] = ()
    #: The whole tool calls the model made (``finish_reason`` is then ``tool_calls``).
    tool_calls: tuple[ToolCallPart, ...] = ()
    #: Choices 1 .. n-1, in index order, when the request asked for more than one.
    extra_choices: tuple[CompletionChoice, ...] = ()
    #: Of ``completion_tokens``, those spent reasoning; of ``prompt_tokens``, those cached.
    reasoning_tokens: int = 0
    cached_tokens: int = 0

    def choices(self) -> tuple[CompletionChoice, ...]:
        """Every choice, in index order."""
        first = CompletionChoice(0, self.text, self.finish_reason, self.logprobs, self.tool_calls)
        return (first, *self.extra_choices)

    @classmethod
    def of_choices(
        cls,
        choices: Sequence[CompletionChoice],
        prompt_tokens: int,
        completion_tokens: int,
        model: str,
        *,
        reasoning_tokens: int = 0,
        cached_tokens: int = 0,
    ) -> Completion:
        """From whole choices (at least one), ordered by index."""
        first, *rest = sorted(choices, key=lambda choice: choice.index)
        return cls(
            first.text,
            first.finish_reason,
            prompt_tokens,
            completion_tokens,
            model,
            first.logprobs,
            first.tool_calls,
            tuple(rest),
            reasoning_tokens,
            cached_tokens,
        )


async def collect_completion(deltas: AsyncIterator[EngineDelta]) -> Completion:
    """Drain a delta stream into one :class:`Completion`, its pieces joined per choice."""
    parts: dict[int, list[EngineDelta]] = {}
    last: EngineDelta | None = None
    async for delta in deltas:
        parts.setdefault(delta.index, []).append(delta)
        last = delta
    if last is None:
        return Completion("", "stop", 0, 0, "")
    choices = [
        CompletionChoice(
            index,
            "".join(piece.text for piece in pieces),
            next((piece.finish_reason for piece in pieces if piece.finish_reason), None),
            tuple(token for piece in pieces for token in piece.logprobs),
            merge_tool_calls(call for piece in pieces for call in piece.tool_calls),
        )
        for index, pieces in parts.items()
    ]
    return Completion.of_choices(
        choices,
        last.prompt_tokens,
        last.completion_tokens,
        last.model,
        reasoning_tokens=last.reasoning_tokens,
        cached_tokens=last.cached_tokens,
    )


class ChatEngine(ABC):
    """A model engine that generates chat completions.

    Implementations are constructed with keyword arguments from their tier's config,
    started once with :meth:`start`, and must be safe for many concurrent
    :meth:`stream` calls on one event loop.
    """

    @abstractmethod
    async def start(self) -> None:
        """Load the model; called once before any request."""

    @abstractmethod
    def stream(self, request: GenerationRequest) -> AsyncIterator[EngineDelta]:
        """Generate, yielding text deltas; abandoning the iterator cancels generation."""

    async def complete(self, request: GenerationRequest) -> Completion:
        """Generate the whole completion."""
        return await collect_completion(self.stream(request))

    async def check_health(self) -> None:  # noqa: B027 - optional hook, healthy by default
        """Raise if the engine cannot serve."""

    async def shutdown(self) -> None:  # noqa: B027 - optional hook
        """Release the engine's resources."""


def import_engine_class(path: str) -> type[ChatEngine]:
    """Resolve ``"package.module:ClassName"`` to a :class:`ChatEngine` subclass."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"engine_class {path!r} must look like 'package.module:ClassName'")
    try:
        obj: Any = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"engine_class {path!r} cannot be imported: {exc}") from None
    if not (isinstance(obj, type) and issubclass(obj, ChatEngine)):
        raise ConfigError(f"engine_class {path!r} is not a ChatEngine subclass")
    return obj
