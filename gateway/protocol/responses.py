"""OpenAI Responses API (``/v1/responses``) wire models: the request, its input items, the
response object and its output items.

The subset that maps onto chat completions is modelled: text in and out, function tools
and their calls, ``text.format`` (JSON mode and JSON Schema), ``reasoning.effort`` and
``text.verbosity``, ``instructions``, ``previous_response_id`` and ``store``. Parameters that
would change the answer but have no equivalent here (built-in tools, images and files,
reasoning summaries, background mode) are refused by name, as the chat endpoint refuses its
own (:data:`UNSUPPORTED_RESPONSES_PARAMETERS`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from gateway.errors import UnsupportedParameterError
from gateway.protocol._base import Tolerant, finite, refuse_other_types
from gateway.protocol.chat import MAX_TOP_LOGPROBS, ReasoningEffort, Verbosity
from gateway.protocol.response_format import JsonSchemaSpec, ResponseFormat, json_schema_problem
from gateway.protocol.tools import FUNCTION_NAME_PATTERN, MAX_TOOLS

__all__ = [
    "LOGPROBS_INCLUDE",
    "TOLERATED_RESPONSES_PARAMETERS",
    "UNSUPPORTED_RESPONSES_PARAMETERS",
    "FunctionCallItem",
    "FunctionCallOutputItem",
    "FunctionTool",
    "InputItem",
    "InputMessage",
    "NamedFunctionChoice",
    "ReasoningConfig",
    "ResponseUsage",
    "ResponsesRequest",
    "TextConfig",
    "TextFormat",
    "known_input_items",
    "reject_unsupported_responses",
]

#: The ``include`` value that adds data here: output text with its tokens' logprobs.
LOGPROBS_INCLUDE = "message.output_text.logprobs"
#: OpenAI's other ``include`` values. They ask for data of items this gateway never produces
#: (reasoning, built-in tool calls, images), so they change nothing and are accepted: agent
#: SDKs send ``reasoning.encrypted_content`` on every request.
_KNOWN_INCLUDES = frozenset(
    {
        LOGPROBS_INCLUDE,
        "reasoning.encrypted_content",
        "file_search_call.results",
        "web_search_call.results",
        "web_search_call.action.sources",
        "message.input_image.image_url",
        "computer_call_output.output.image_url",
        "code_interpreter_call.outputs",
    }
)
#: Content part types that carry text (what a message item may hold here).
_TEXT_PARTS = frozenset({"input_text", "output_text", "text", "refusal"})
#: Input item types this gateway reads; any other is refused by name.
_ITEM_TYPES = frozenset({"message", "function_call", "function_call_output"})


class ContentPart(Tolerant):
    """A text part of a message item: ``input_text`` (user side) or ``output_text`` (assistant)."""

    type: Literal["input_text", "output_text", "text", "refusal"]
    text: str | None = None
    #: The text of a ``refusal`` part.
    refusal: str | None = None

    def as_text(self) -> str:
        """The part's text."""
        return (self.refusal if self.type == "refusal" else self.text) or ""


def _refuse_non_text_parts(value: Any) -> Any:
    return refuse_other_types(value, _TEXT_PARTS, "content parts", "text parts")


class InputMessage(Tolerant):
    """A message item: ``{"role", "content"}``, with or without ``"type": "message"``."""

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]

    _parts = field_validator("content", mode="before")(_refuse_non_text_parts)

    def text(self) -> str:
        """The message's text, with parts joined."""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.as_text() for part in self.content)


class FunctionCallItem(Tolerant):
    """A ``function_call`` item: a call the model made, sent back with its output."""

    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: Annotated[str, Field(pattern=FUNCTION_NAME_PATTERN)]
    arguments: str


class FunctionCallOutputItem(Tolerant):
    """A ``function_call_output`` item: the result of the call with the same ``call_id``."""

    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str | list[ContentPart]

    _parts = field_validator("output", mode="before")(_refuse_non_text_parts)

    def text(self) -> str:
        """The output as text."""
        if isinstance(self.output, str):
            return self.output
        return "".join(part.as_text() for part in self.output)


def _item_type(item: Any) -> str | None:
    if isinstance(item, BaseModel):
        item = {"type": getattr(item, "type", None)}
    if not isinstance(item, dict):
        return None
    kind = item.get("type")
    if kind is None and "role" in item:
        return "message"
    return kind if isinstance(kind, str) else None


def _item_tag(item: Any) -> str | None:
    # The "item:" tags appear in error locations; the parser leaves them out of ``param``.
    kind = _item_type(item)
    return None if kind is None else f"item:{kind}"


#: An ``input`` item, told apart by ``type`` (a message may leave it out).
InputItem = Annotated[
    Annotated[InputMessage, Tag("item:message")]
    | Annotated[FunctionCallItem, Tag("item:function_call")]
    | Annotated[FunctionCallOutputItem, Tag("item:function_call_output")],
    Discriminator(
        _item_tag,
        custom_error_type="invalid_item",
        custom_error_message="each input item needs a 'type' ('role' alone makes a message)",
    ),
]


class FunctionTool(Tolerant):
    """A ``tools`` entry: Responses' flat function definition."""

    type: Literal["function"]
    name: Annotated[str, Field(pattern=FUNCTION_NAME_PATTERN)]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class NamedFunctionChoice(Tolerant):
    """``tool_choice`` forcing one function: ``{"type": "function", "name": ...}``."""

    type: Literal["function"]
    name: str = Field(min_length=1)


class TextFormat(BaseModel):
    """``text.format``: ``text``, ``json_object``, or ``json_schema`` with the name and schema inline."""

    # Unknown fields are refused, as in ``response_format``: a misspelt "schema" would
    # otherwise leave the answer silently unconstrained.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, serialize_by_alias=True)

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None

    @model_validator(mode="after")
    def _schema_goes_with_its_type(self) -> TextFormat:
        if self.type != "json_schema":
            if self.name is not None or self.schema_ is not None:
                raise ValueError(f"'name' and 'schema' are only allowed when type is 'json_schema', not {self.type!r}")
            return self
        if self.name is None or self.schema_ is None:
            raise ValueError("'name' and 'schema' are required when type is 'json_schema'")
        if (problem := json_schema_problem(self.schema_)) is not None:
            raise ValueError(f"'schema' is not a valid JSON Schema: {problem}")
        return self

    def response_format(self) -> ResponseFormat:
        """The same format as chat completions' ``response_format``."""
        if self.type != "json_schema":
            return ResponseFormat(type=self.type)
        spec = JsonSchemaSpec.model_validate(
            {"name": self.name, "description": self.description, "schema": self.schema_, "strict": self.strict}
        )
        return ResponseFormat(type="json_schema", json_schema=spec)


class TextConfig(Tolerant):
    """``text``: the output's format and ``verbosity`` (for tiers whose model takes it)."""

    format: TextFormat | None = None
    verbosity: Verbosity | None = None


class ReasoningConfig(Tolerant):
    """``reasoning``: ``effort`` goes to the tiers whose model takes ``reasoning_effort``.

    Summaries are refused (:func:`reject_unsupported_responses`): the tiers answer through
    Chat Completions, which returns none.
    """

    effort: ReasoningEffort | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None
    mode: str | None = None


def known_input_items(value: Any, field: str = "items") -> Any:
    """A before-validator's body: refuse, naming it, an item of a type this gateway does not
    serve (rather than the union's "does not match" for each branch)."""
    if isinstance(value, list):
        for position, item in enumerate(value):
            kind = _item_type(item)
            if kind is not None and kind not in _ITEM_TYPES:
                raise ValueError(
                    f"{field}[{position}]: items of type {kind!r} are not supported; send messages, "
                    "function_call and function_call_output items"
                )
    return value


class ResponsesRequest(Tolerant):
    """``POST /v1/responses`` body."""

    model: str = Field(min_length=1)
    #: A string is one user message.
    input: Annotated[list[InputItem], Field(min_length=1)]
    instructions: str | None = None
    previous_response_id: str | None = Field(default=None, min_length=1, max_length=128)
    #: A conversation (``/v1/conversations``) whose items are this response's history, and to
    #: which its input and output items are added.
    conversation: str | None = Field(default=None, min_length=1, max_length=128)
    store: bool | None = None
    #: Answer at once with a ``queued`` response, run it on, and keep the result for ``GET``
    #: (and ``POST /v1/responses/{id}/cancel``); see :mod:`gateway.serving.background_runs`.
    background: bool | None = None
    stream: bool | None = False
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    max_output_tokens: Annotated[int, Field(ge=1)] | None = None
    tools: Annotated[list[FunctionTool], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedFunctionChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    metadata: Annotated[dict[str, Annotated[str, Field(max_length=512)]], Field(max_length=16)] | None = None
    #: Optional output data; only ``message.output_text.logprobs`` exists here.
    include: list[str] | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None
    user: str | None = None
    #: slm-router extension: per-request routing threshold for the virtual router model.
    router_threshold: Annotated[float, Field(ge=0.0, le=1.0)] | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _known_items(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [{"type": "message", "role": "user", "content": value}]
        return known_input_items(value, "input")

    @field_validator("conversation", mode="before")
    @classmethod
    def _conversation_id(cls, value: Any) -> Any:
        # Either the id or {"id": ...}, as the SDK sends it.
        return value.get("id") if isinstance(value, dict) and set(value) == {"id"} else value

    @field_validator("tools", mode="before")
    @classmethod
    def _function_tools_only(cls, value: Any) -> Any:
        return refuse_other_types(value, ("function",), "tools", "'function' tools")

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _function_choice_only(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("type") not in (None, "function"):
            raise ValueError(f"tool_choice of type {value.get('type')!r} is not supported")
        return value

    _finite = field_validator("temperature", "top_p", "router_threshold")(finite)

    @field_validator("include")
    @classmethod
    def _known_includes(cls, value: list[str] | None) -> list[str] | None:
        for name in value or ():
            if name not in _KNOWN_INCLUDES:
                raise ValueError(f"include {name!r} is not a known value")
        return value

    def wants_logprobs(self) -> bool:
        """Whether output text carries its tokens' logprobs (asked by ``include`` or ``top_logprobs``)."""
        return LOGPROBS_INCLUDE in (self.include or ()) or bool(self.top_logprobs)

    def stores(self) -> bool:
        """Whether the response is kept for ``GET`` and ``previous_response_id`` (OpenAI's default: yes)."""
        return self.store is not False

    def model_params(self) -> dict[str, str]:
        """``reasoning.effort`` and ``text.verbosity`` as chat completions' ``reasoning_effort``
        and ``verbosity`` (only those set)."""
        params = {
            "reasoning_effort": self.reasoning.effort if self.reasoning is not None else None,
            "verbosity": self.text.verbosity if self.text is not None else None,
        }
        return {name: value for name, value in params.items() if value is not None}

    def format(self) -> TextFormat | None:
        """``text.format`` (``None`` for plain text)."""
        fmt = self.text.format if self.text is not None else None
        return None if fmt is None or fmt.type == "text" else fmt


#: ``(parameter, its "off" values, why any other value is refused)``, checked in this order.
UNSUPPORTED_RESPONSES_PARAMETERS: tuple[tuple[str, tuple[Any, ...], str], ...] = (
    (
        "truncation",
        (None, "disabled"),
        "truncation 'auto' is not supported; a request over the context fails instead",
    ),
    ("max_tool_calls", (None,), "max_tool_calls is not supported"),
    ("prompt", (None,), "reusable prompts are not supported; send the text in 'input'"),
    ("background_options", (None,), "background_options are not supported"),
    ("context_management", (None, []), "context compaction is not supported; a request over the context fails instead"),
    ("moderation", (None,), "moderated responses are not supported: moderate input and output before the gateway"),
)

#: Responses parameters accepted and not acted on: tags, hints on latency, price or caching,
#: and options for what this gateway never handles (image input is refused item by item).
TOLERATED_RESPONSES_PARAMETERS = frozenset(
    {
        "safety_identifier",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "stream_options",
        "image",
        "access_programs",
    }
)


def reject_unsupported_responses(request: ResponsesRequest) -> None:
    """Raise :class:`UnsupportedParameterError` for a parameter that would change the answer but
    is not implemented (they arrive as tolerated extra fields)."""
    extra = request.model_extra or {}
    for name, off_values, reason in UNSUPPORTED_RESPONSES_PARAMETERS:
        if name in extra and extra[name] not in off_values:
            raise UnsupportedParameterError(reason, param=name)
    reasoning = request.reasoning
    if reasoning is not None:
        for name in ("summary", "generate_summary"):
            if getattr(reasoning, name) is not None:
                raise UnsupportedParameterError(
                    "reasoning summaries are not supported: the models here answer through Chat "
                    "Completions, which returns none",
                    param=f"reasoning.{name}",
                )
        if reasoning.mode not in (None, "standard"):
            raise UnsupportedParameterError("only the 'standard' reasoning mode is supported", param="reasoning.mode")


class ResponseUsage(BaseModel):
    """A response's token counts, plus slm-router's cost figures when accounting is on."""

    input_tokens: int
    input_tokens_details: dict[str, int] = Field(default_factory=lambda: {"cached_tokens": 0})
    output_tokens: int
    output_tokens_details: dict[str, int] = Field(default_factory=lambda: {"reasoning_tokens": 0})
    total_tokens: int
    #: ``{"cost_usd", "baseline_usd", "savings_usd"}`` (slm-router extension).
    slm_router: dict[str, float] | None = None
