"""OpenAI chat-completions wire models.

Requests tolerate unknown fields, as OpenAI's API does; the fields we act on are
validated strictly (ranges, no NaN). Responses are plain pydantic models serialised
with ``model_dump(exclude_none=...)`` by the serving layer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from gateway.protocol._base import OmitNone, Tolerant, finite, refuse_other_types
from gateway.protocol.model_params import (
    MODEL_PARAMS,
    ModelParam,
    ReasoningEffort,
    Verbosity,
    VLLMSamplingFields,
)
from gateway.protocol.response_format import ResponseFormat
from gateway.protocol.tools import (
    MAX_TOOLS,
    FunctionCall,
    FunctionCallDelta,
    FunctionDefinition,
    NamedFunction,
    NamedToolChoice,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolDefinition,
    ToolNeed,
)

__all__ = [
    "MODEL_PARAMS",
    "ChatCompletionChoice",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatCompletionResponse",
    "ChatMessage",
    "ChoiceLogprobs",
    "ChunkChoice",
    "DeltaMessage",
    "LogitBias",
    "ModelParam",
    "ReasoningEffort",
    "ResponseMessage",
    "Stop",
    "StreamOptions",
    "TextContentPart",
    "TokenLogprobModel",
    "Usage",
    "Verbosity",
]

#: OpenAI's upper bound for ``top_logprobs``.
MAX_TOP_LOGPROBS = 20
#: OpenAI's upper bound for ``n`` (a gateway's own cap, ``server.max_choices``, is lower).
MAX_N = 128


def _no_empty_sequences(value: list[str]) -> list[str]:
    if any(s == "" for s in value):
        raise ValueError("stop sequences must not be empty")
    return value


#: ``stop``: one sequence, or a list of up to four (none empty).
Stop = str | Annotated[list[str], Field(max_length=4), AfterValidator(_no_empty_sequences)]

#: The most entries ``logit_bias`` may have (OpenAI documents no bound; this keeps a body's
#: sampling work small).
MAX_LOGIT_BIAS = 1024


def _token_id_keys(value: dict[str, float]) -> dict[str, float]:
    for key in value:
        if not (key.isascii() and key.isdigit() and len(key) <= 10):
            raise ValueError(f"logit_bias keys are token ids (non-negative integers); got {key!r}")
    return value


#: Token id (as a decimal string) to a bias from -100 (ban) to 100 (force).
LogitBias = Annotated[
    dict[str, Annotated[float, Field(ge=-100.0, le=100.0)]],
    Field(max_length=MAX_LOGIT_BIAS),
    AfterValidator(_token_id_keys),
]

#: ``function`` is the legacy role of a function's result (see :mod:`gateway.protocol.legacy_functions`).
Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class TextContentPart(Tolerant):
    """One ``{"type": "text", "text": ...}`` element of an array ``content``."""

    type: Literal["text"]
    text: str


class ChatMessage(Tolerant):
    """A message in ``messages``: ``content`` is a string or a list of text parts.

    An assistant turn may carry the ``tool_calls`` it made (its ``content`` may then be
    null); a ``tool`` turn answers one of them by ``tool_call_id``. The legacy forms, an
    assistant's ``function_call`` and a ``function`` turn with the function's ``name``, are
    rewritten into those before serving.
    """

    role: Role
    content: str | list[TextContentPart] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    #: A participant's name; for a legacy ``function`` turn, the function whose result it is.
    name: str | None = None
    #: The legacy form of one tool call (assistant turns only).
    function_call: FunctionCall | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts_only(cls, value: Any) -> Any:
        return refuse_other_types(value, ("text",), "content parts", "'text' parts")

    @model_validator(mode="after")
    def _content_required(self) -> ChatMessage:
        if self.content is None and self.role != "assistant":
            raise ValueError(f"content is required for role {self.role!r}")
        if (self.tool_calls or self.function_call) and self.role != "assistant":
            kind = "tool_calls" if self.tool_calls else "function_call"
            raise ValueError(f"only assistant messages carry {kind}, not role {self.role!r}")
        if self.tool_calls and self.function_call:
            raise ValueError("an assistant message carries tool_calls or the legacy function_call, not both")
        if self.role == "function" and not self.name:
            raise ValueError("a function message needs the name of the function whose result it is")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id it answers")
        return self

    def text(self) -> str:
        """The message's text, with array parts joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(Tolerant):
    """``stream_options``: only ``include_usage`` has an effect."""

    include_usage: bool = False


class ChatCompletionRequest(Tolerant, VLLMSamplingFields):
    """``POST /v1/chat/completions`` body."""

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    stop: Stop | None = None
    seed: int | None = None
    user: str | None = None
    n: Annotated[int, Field(ge=1, le=MAX_N)] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    #: Text (default), JSON mode or a JSON Schema; see :mod:`gateway.protocol.response_format`.
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None
    #: Functions the model may call; see :mod:`gateway.protocol.tools`.
    tools: Annotated[list[ToolDefinition], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    #: Legacy function calling, served as tool calling (see :mod:`gateway.protocol.legacy_functions`).
    functions: Annotated[list[FunctionDefinition], Field(max_length=MAX_TOOLS)] | None = None
    function_call: Literal["none", "auto"] | NamedFunction | None = None
    #: ``false`` keeps this conversation out of the labelling sample (``state.capture``). It
    #: governs what the gateway keeps and is not sent on to either tier.
    store: bool | None = None
    #: Token id (as a decimal string) to a bias from -100 (ban) to 100 (force). Token ids are
    #: a tokenizer's, so only a request that names a model may set it.
    logit_bias: LogitBias | None = None
    #: Sent to the tiers whose model takes them (see :meth:`model_params`).
    reasoning_effort: ReasoningEffort | None = None
    verbosity: Verbosity | None = None
    #: slm-router extension: per-request routing threshold for the virtual router model.
    router_threshold: Annotated[float, Field(ge=0.0, le=1.0)] | None = None

    #: Set by ``/v1/completions`` (never from a body): see :attr:`raw_prompt`.
    _raw_prompt: bool = PrivateAttr(default=False)

    _finite = field_validator("temperature", "top_p", "presence_penalty", "frequency_penalty", "router_threshold")(
        finite
    )

    @property
    def raw_prompt(self) -> bool:
        """Whether the one user message is a prompt to continue as plain text, without the
        model's chat template (a ``/v1/completions`` request); only tiers that complete text
        serve it."""
        return self._raw_prompt

    def as_raw_prompt(self) -> ChatCompletionRequest:
        """This request, its one user message to be continued as plain text (:attr:`raw_prompt`)."""
        copy = self.model_copy()
        copy._raw_prompt = True
        return copy

    @field_validator("top_logprobs")
    @classmethod
    def _top_logprobs_need_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value and not info.data.get("logprobs"):
            # OpenAI refuses this too: the alternatives come with each token's own logprob.
            raise ValueError("top_logprobs needs logprobs: true")
        return value

    def stop_sequences(self) -> list[str]:
        """``stop`` as a list."""
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def requested_max_tokens(self) -> int | None:
        """``max_completion_tokens`` wins over the legacy ``max_tokens``."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def output_type(self) -> Literal["text", "json"]:
        """``gen_ai.output.type``: ``json`` for JSON mode and structured outputs, else ``text``."""
        fmt = self.response_format
        return "text" if fmt is None or fmt.type == "text" else "json"

    def choices(self) -> int:
        """How many choices to generate (``n``, 1 when unset)."""
        return self.n or 1

    def model_params(self) -> dict[str, Any]:
        """The model-specific parameters set (:data:`~gateway.protocol.model_params.MODEL_PARAMS`),
        by name: ``reasoning_effort``, ``verbosity`` other than its default ``medium``, and
        vLLM's extensions other than their defaults (defaults ask for nothing)."""
        params: dict[str, Any] = {}
        if self.reasoning_effort is not None:
            params["reasoning_effort"] = self.reasoning_effort
        if self.verbosity not in (None, "medium"):
            params["verbosity"] = self.verbosity
        params.update(self.vllm_params())
        return params

    def calls_tools(self) -> bool:
        """Whether the answer may be tool calls: tools are offered and ``tool_choice`` is not ``none``."""
        return bool(self.tools) and self.tool_choice != "none"

    def needs_tool_calling(self) -> bool:
        """Whether only a tier with tool calling can serve this: it may call tools, or the
        conversation holds tool calls and their results (which only such a model reads)."""
        return self.calls_tools() or self._holds_tool_turns()

    def forced_function(self) -> FunctionDefinition | None:
        """The function whose one call ``tool_choice`` forces (by naming it, or as ``required``
        with one function offered) in a conversation without tool turns: a model without tool
        calling can make that call by constrained decoding. ``None`` otherwise."""
        tools = self.tools or []
        choice = self.tool_choice
        if isinstance(choice, NamedToolChoice):
            chosen = [tool.function for tool in tools if tool.function.name == choice.function.name]
        elif choice == "required" and len(tools) == 1:
            chosen = [tools[0].function]
        else:
            return None
        return chosen[0] if chosen and not self._holds_tool_turns() else None

    def tool_need(self) -> ToolNeed:
        """What tool calling serving this takes (see :data:`~gateway.protocol.tools.ToolNeed`)."""
        if self.forced_function() is not None:
            return "forced"
        return "any" if self.needs_tool_calling() else "none"

    def offered_tools(self) -> dict[str, Any]:
        """``tools`` and ``tool_choice`` as OpenAI's JSON, for an engine or a replay (empty
        when no tools are offered; ``tool_choice`` only when set)."""
        if not self.tools:
            return {}
        offered: dict[str, Any] = {"tools": [tool.model_dump(mode="json", exclude_none=True) for tool in self.tools]}
        choice = self.tool_choice
        if choice is not None:
            offered["tool_choice"] = (
                choice if isinstance(choice, str) else choice.model_dump(mode="json", exclude_none=True)
            )
        return offered

    def _holds_tool_turns(self) -> bool:
        return any(m.role == "tool" or m.tool_calls for m in self.messages)

    def wants_usage_in_stream(self) -> bool:
        """Whether a stream should end with a usage chunk."""
        return self.stream_options is not None and self.stream_options.include_usage


class Usage(BaseModel):
    """Token counts of one completion, plus slm-router's cost figures when accounting is on."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    #: ``{"reasoning_tokens": n}``: of ``completion_tokens``, those a reasoning model spent
    #: thinking (only when the model reported some).
    completion_tokens_details: dict[str, int] | None = None
    #: ``{"cached_tokens": n}``: of ``prompt_tokens``, those the provider served from its
    #: prompt cache (only when it reported some).
    prompt_tokens_details: dict[str, int] | None = None
    #: ``{"cost_usd", "baseline_usd", "savings_usd"}`` for this request (slm-router extension).
    slm_router: dict[str, float] | None = None

    @classmethod
    def counted(
        cls,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        reasoning_tokens: int = 0,
        cached_tokens: int = 0,
        slm_router: dict[str, float] | None = None,
    ) -> Usage:
        """The usage of these counts (details only where there is something to say)."""
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
            completion_tokens_details={"reasoning_tokens": reasoning_tokens} if reasoning_tokens else None,
            prompt_tokens_details={"cached_tokens": cached_tokens} if cached_tokens else None,
            slm_router=slm_router,
        )

    @model_serializer(mode="wrap")
    def _drop_unset_extension(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for name in ("slm_router", "completion_tokens_details", "prompt_tokens_details"):
            if data.get(name) is None:
                data.pop(name, None)
        return data


class ResponseMessage(BaseModel):
    """The assistant message of a non-stream choice: text, or (``content`` null) tool calls."""

    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = None
    #: The legacy form of one call, for a request that used legacy ``functions``.
    function_call: FunctionCall | None = None

    @model_serializer(mode="wrap")
    def _drop_unset_calls(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # ``content`` stays, null or not, as OpenAI sends it; the calls only when made.
        data: dict[str, Any] = handler(self)
        for name in ("tool_calls", "function_call"):
            if data.get(name) is None:
                data.pop(name, None)
        return data


class TopLogprobModel(BaseModel):
    """One alternative in ``top_logprobs``."""

    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprobModel(TopLogprobModel):
    """One output token of ``logprobs.content``, with its most likely alternatives."""

    top_logprobs: list[TopLogprobModel] = Field(default_factory=list)


class ChoiceLogprobs(BaseModel):
    """A choice's ``logprobs``: one entry per output token (``refusal`` is always null here)."""

    content: list[TokenLogprobModel] | None
    refusal: None = None

    @classmethod
    def of(cls, tokens: Iterable[Mapping[str, Any]]) -> ChoiceLogprobs:
        """From tokens in OpenAI's shape (``{"token", "logprob", "bytes", "top_logprobs"}``)."""
        return cls(content=[TokenLogprobModel.model_validate(token) for token in tokens])


class ChatCompletionChoice(BaseModel):
    """One choice of a non-stream response."""

    index: int = 0
    message: ResponseMessage
    finish_reason: str | None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionResponse(BaseModel):
    """``chat.completion`` object."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatCompletionChoice]
    usage: Usage
    system_fingerprint: str | None = None


class DeltaMessage(OmitNone):
    """The incremental message of a stream chunk (unset fields are left out, as OpenAI does)."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    #: The legacy form of a call's fragment, for a request that used legacy ``functions``.
    function_call: FunctionCallDelta | None = None


class ChunkChoice(BaseModel):
    """One choice of a stream chunk."""

    index: int = 0
    delta: DeltaMessage
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    """``chat.completion.chunk`` object."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
