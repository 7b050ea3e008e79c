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
    "ChatEngine",
    "Completion",
    "EngineDelta",
    "GenerationRequest",
    "collect_completion",
    "import_engine_class",
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
        return fields


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


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole completion, the result of a non-stream call."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    model: str


async def collect_completion(deltas: AsyncIterator[EngineDelta]) -> Completion:
    """Drain a delta stream into one :class:`Completion`."""
    parts: list[str] = []
    last: EngineDelta | None = None
    async for delta in deltas:
        parts.append(delta.text)
        last = delta
    if last is None:
        return Completion("", "stop", 0, 0, "")
    return Completion("".join(parts), last.finish_reason, last.prompt_tokens, last.completion_tokens, last.model)


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
