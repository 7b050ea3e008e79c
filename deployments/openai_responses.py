"""Reading an OpenAI-protocol upstream's answers, shared by both hosted transports.

litellm hands back SDK objects and the direct transport plain JSON dicts; both go through
the same readers here, so every choice, its text, logprobs, tool calls and finish reason,
and the usage, are read the same way whichever transport a tier uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.engine import (
    Completion,
    CompletionChoice,
    EngineDelta,
    TokenLogprob,
    ToolCallPart,
    logprobs_from_openai,
    openai_field,
    tool_calls_from_openai,
)

__all__ = ["ChunkReader", "completion_from_openai"]


@dataclass(frozen=True, slots=True)
class _Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0


def _usage(item: Any) -> _Usage:
    usage = openai_field(item, "usage")
    completion_details = openai_field(usage, "completion_tokens_details")
    prompt_details = openai_field(usage, "prompt_tokens_details")
    return _Usage(
        int(openai_field(usage, "prompt_tokens") or 0),
        int(openai_field(usage, "completion_tokens") or 0),
        int(openai_field(completion_details, "reasoning_tokens") or 0),
        int(openai_field(prompt_details, "cached_tokens") or 0),
    )


def _index(choice: Any, position: int) -> int:
    index = openai_field(choice, "index")
    return index if isinstance(index, int) else position


def completion_from_openai(response: Any, model: str) -> Completion:
    """A ``chat.completion`` (dict or SDK object) as a :class:`Completion`, every choice kept."""
    choices = []
    for position, choice in enumerate(openai_field(response, "choices") or [{}]):
        message = openai_field(choice, "message")
        choices.append(
            CompletionChoice(
                index=_index(choice, position),
                text=openai_field(message, "content") or "",
                finish_reason=openai_field(choice, "finish_reason"),
                logprobs=logprobs_from_openai(openai_field(choice, "logprobs")),
                tool_calls=tool_calls_from_openai(openai_field(message, "tool_calls")),
            )
        )
    usage = _usage(response)
    return Completion.of_choices(
        choices,
        usage.prompt_tokens,
        usage.completion_tokens,
        model,
        reasoning_tokens=usage.reasoning_tokens,
        cached_tokens=usage.cached_tokens,
    )


class ChunkReader:
    """Turns a stream's ``chat.completion.chunk`` objects (dicts or SDK objects) into deltas.

    Usage arrives in the upstream's last chunk (``stream_options.include_usage``); until
    then ``completion_tokens`` counts the pieces seen. Each choice's finish reason is held
    back and sent by :meth:`finish`, after the upstream's stream has ended, so the closing
    deltas carry the final usage.
    """

    def __init__(self, model: str) -> None:
        self._model = model
        self._pieces = 0
        self._usage = _Usage()
        self._finish: dict[int, str | None] = {}

    def feed(self, chunk: Any) -> list[EngineDelta]:
        """The deltas in one chunk: those with text, logprobs or tool-call fragments."""
        if openai_field(chunk, "usage") is not None:
            self._usage = _usage(chunk)
        deltas = []
        for position, choice in enumerate(openai_field(chunk, "choices") or []):
            index = _index(choice, position)
            delta = openai_field(choice, "delta")
            self._finish[index] = openai_field(choice, "finish_reason") or self._finish.get(index)
            text = openai_field(delta, "content") or ""
            logprobs = logprobs_from_openai(openai_field(choice, "logprobs"))
            calls = tool_calls_from_openai(openai_field(delta, "tool_calls"))
            if text or logprobs or calls:
                self._pieces += 1
                deltas.append(self._delta(text, None, index, logprobs, calls))
        return deltas

    def _delta(
        self,
        text: str,
        finish_reason: str | None,
        index: int,
        logprobs: tuple[TokenLogprob, ...] = (),
        calls: tuple[ToolCallPart, ...] = (),
    ) -> EngineDelta:
        usage = self._usage
        return EngineDelta(
            text,
            finish_reason,
            usage.prompt_tokens,
            usage.completion_tokens or self._pieces,
            self._model,
            logprobs,
            calls,
            index,
            usage.reasoning_tokens,
            usage.cached_tokens,
        )

    def finish(self) -> list[EngineDelta]:
        """One closing delta per choice seen (choice 0 when none was), with the final usage."""
        return [self._delta("", self._finish.get(index) or "stop", index) for index in sorted(self._finish) or [0]]
