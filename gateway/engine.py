"""The narrow interface between the gateway and a model backend.

A :class:`ChatEngine` turns a :class:`GenerationRequest` (already validated and
normalised) into a stream of :class:`EngineDelta` pieces. vLLM sits behind it in
production and in tests; a hosted model sits behind the same shape through litellm.
Both types are plain dataclasses so they cross Ray's process boundary cheaply.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import ConfigError

__all__ = [
    "MIN_LOGPROB",
    "ChatEngine",
    "Completion",
    "EngineDelta",
    "GenerationRequest",
    "TokenLogprob",
    "collect_completion",
    "import_engine_class",
    "logprobs_from_openai",
]


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A chat generation request in the gateway's own terms."""

    request_id: str
    #: ``[{"role": ..., "content": str}, ...]`` with array contents already joined.
    messages: list[dict[str, str]]
    max_tokens: int
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
    #: W3C trace context (``traceparent``/``tracestate``) to pass to the model upstream.
    trace_headers: dict[str, str] = field(default_factory=dict)

    def openai_optional_fields(self) -> dict[str, Any]:
        """The optional fields that are set (sampling, ``user``, ``response_format``), named as in
        OpenAI's Chat Completions API."""
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
            )
            if (value := getattr(self, name)) is not None
        }
        if self.stop:
            fields["stop"] = list(self.stop)
        if self.logprobs:
            fields["logprobs"] = True
            if self.top_logprobs:
                fields["top_logprobs"] = self.top_logprobs
        return fields


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

        def field_of(item: Any, name: str) -> Any:
            return item.get(name) if isinstance(item, dict) else getattr(item, name, None)

        raw_bytes = field_of(data, "bytes")
        logprob = field_of(data, "logprob")
        return cls(
            token=str(field_of(data, "token") or ""),
            logprob=float(logprob) if logprob is not None else MIN_LOGPROB,
            bytes=[int(b) for b in raw_bytes] if raw_bytes is not None else None,
            top_logprobs=tuple(cls.from_openai(alt) for alt in field_of(data, "top_logprobs") or ()),
        )


def logprobs_from_openai(choice_logprobs: Any) -> tuple[TokenLogprob, ...]:
    """The tokens of an upstream choice's ``logprobs`` (``{"content": [...]}``, a dict or an SDK object)."""
    if choice_logprobs is None:
        return ()
    content = (
        choice_logprobs.get("content")
        if isinstance(choice_logprobs, dict)
        else getattr(choice_logprobs, "content", None)
    )
    return tuple(TokenLogprob.from_openai(item) for item in content or ())


@dataclass(frozen=True, slots=True)
class EngineDelta:
    """One streamed piece of a completion.

    ``prompt_tokens`` and ``completion_tokens`` are running totals, so the last delta
    carries the final usage.
    """

    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: The concrete model that produced the text.
    model: str = ""
    #: The log probabilities of this piece's tokens, when the request asked for them.
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole completion, the result of a non-stream call."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    model: str
    #: Every output token's log probability, when the request asked for them.
    logprobs: tuple[TokenLogprob, ...] = ()


async def collect_completion(deltas: AsyncIterator[EngineDelta]) -> Completion:
    """Drain a delta stream into one :class:`Completion`."""
    parts: list[str] = []
    logprobs: list[TokenLogprob] = []
    last: EngineDelta | None = None
    async for delta in deltas:
        parts.append(delta.text)
        logprobs.extend(delta.logprobs)
        last = delta
    if last is None:
        return Completion("", "stop", 0, 0, "")
    return Completion(
        "".join(parts), last.finish_reason, last.prompt_tokens, last.completion_tokens, last.model, tuple(logprobs)
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
