"""OpenAI's legacy Completions API (``/v1/completions``) wire models.

A prompt continued as plain text, without a chat template: what benchmark tools (vLLM's
``bench serve``, lm-eval-harness's ``local-completions``), base-model apps and older SDK code
send. One prompt per request (a string, or a list holding one); ``n`` choices of it. Parameters
that would change the answer but are not served (``echo``, ``suffix``, ``best_of`` above ``n``,
token-id prompts) are refused by name (:func:`reject_unsupported_completion`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from gateway.errors import UnsupportedParameterError
from gateway.protocol._base import Tolerant, finite
from gateway.protocol.chat import MAX_N, LogitBias, Stop, StreamOptions, TokenLogprobModel, Usage
from gateway.protocol.model_params import VLLMSamplingFields

__all__ = [
    "COMPLETION_LOGPROBS_MAX",
    "TOLERATED_COMPLETIONS_PARAMETERS",
    "UNSUPPORTED_COMPLETIONS_PARAMETERS",
    "CompletionChoice",
    "CompletionLogprobs",
    "CompletionRequest",
    "CompletionResponse",
    "reject_unsupported_completion",
]

#: OpenAI's upper bound for the Completions API's ``logprobs`` (alternatives per token).
COMPLETION_LOGPROBS_MAX = 5
#: OpenAI's default ``max_tokens`` for a completion (chat has none).
DEFAULT_COMPLETION_MAX_TOKENS = 16


class CompletionRequest(Tolerant, VLLMSamplingFields):
    """``POST /v1/completions`` body."""

    model: str = Field(min_length=1)
    #: One prompt: a string, or a list holding one string.
    prompt: str
    max_tokens: Annotated[int, Field(ge=1)] | None = DEFAULT_COMPLETION_MAX_TOKENS
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    n: Annotated[int, Field(ge=1, le=MAX_N)] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    stop: Stop | None = None
    seed: int | None = None
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    #: Token id (as a decimal string) to a bias from -100 to 100, in the named model's tokenizer.
    logit_bias: LogitBias | None = None
    #: Each token's log probability with this many alternatives (0-5).
    logprobs: Annotated[int, Field(ge=0, le=COMPLETION_LOGPROBS_MAX)] | None = None
    echo: bool | None = None
    suffix: str | None = None
    best_of: Annotated[int, Field(ge=1, le=MAX_N)] | None = None
    user: str | None = None
    #: slm-router extension: per-request routing threshold for the virtual router model.
    router_threshold: Annotated[float, Field(ge=0.0, le=1.0)] | None = None

    _finite = field_validator("temperature", "top_p", "presence_penalty", "frequency_penalty", "router_threshold")(
        finite
    )

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_text_prompt(cls, value: Any) -> Any:
        if isinstance(value, list):
            if len(value) != 1:
                raise ValueError(f"send one prompt per request (got a list of {len(value)})")
            value = value[0]
        if isinstance(value, list) or (isinstance(value, int) and not isinstance(value, bool)):
            raise ValueError("token-id prompts are not supported; send the prompt as text")
        if isinstance(value, str) and not value:
            raise ValueError("the prompt must not be empty")
        return value


#: ``(parameter, its "off" values, why any other value is refused)``, checked in this order;
#: ``best_of`` is checked against ``n`` (:func:`reject_unsupported_completion`).
UNSUPPORTED_COMPLETIONS_PARAMETERS: tuple[tuple[str, tuple[Any, ...], str], ...] = (
    ("echo", (None, False), "echo is not supported: the prompt is not returned with the completion"),
    ("suffix", (None, ""), "suffix (fill-in-the-middle) is not supported"),
)

#: Completions parameters accepted and not acted on (none today; kept for the SDK check).
TOLERATED_COMPLETIONS_PARAMETERS: frozenset[str] = frozenset()


def reject_unsupported_completion(request: CompletionRequest) -> None:
    """Raise :class:`UnsupportedParameterError` for a parameter that would change the answer but
    is not served."""
    for name, off_values, reason in UNSUPPORTED_COMPLETIONS_PARAMETERS:
        if getattr(request, name) not in off_values:
            raise UnsupportedParameterError(reason, param=name)
    if request.best_of is not None and request.best_of != (request.n or 1):
        raise UnsupportedParameterError(
            "best_of other than n is not supported: every generated choice is returned", param="best_of"
        )


class CompletionLogprobs(BaseModel):
    """A completion choice's ``logprobs`` in the legacy shape: parallel lists per token."""

    tokens: list[str]
    token_logprobs: list[float]
    #: Per token, its most likely alternatives as ``{token: logprob}``.
    top_logprobs: list[dict[str, float]]
    #: Per token, where it starts in the completion's text (in characters).
    text_offset: list[int]

    @classmethod
    def of(cls, tokens: Iterable[TokenLogprobModel], offset: int = 0) -> CompletionLogprobs:
        """From chat's per-token records; ``offset`` is where the first token starts."""
        shaped = cls(tokens=[], token_logprobs=[], top_logprobs=[], text_offset=[])
        for token in tokens:
            shaped.tokens.append(token.token)
            shaped.token_logprobs.append(token.logprob)
            shaped.top_logprobs.append({top.token: top.logprob for top in token.top_logprobs})
            shaped.text_offset.append(offset)
            offset += len(token.token)
        return shaped


class CompletionChoice(BaseModel):
    """One choice of a completion (or its fragment in a stream chunk)."""

    text: str
    index: int = 0
    logprobs: CompletionLogprobs | None = None
    finish_reason: Literal["stop", "length", "content_filter"] | None = None


class CompletionResponse(BaseModel):
    """A ``text_completion`` object: the whole answer, or one stream chunk of it."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
