"""OpenAI wire protocol: request and response models."""

from gateway.protocol.chat import (
    MODEL_PARAMS,
    ChatCompletionChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatMessage,
    ChoiceLogprobs,
    ChunkChoice,
    DeltaMessage,
    ModelParam,
    ResponseMessage,
    StreamOptions,
    TextContentPart,
    TokenLogprobModel,
    Usage,
)
from gateway.protocol.models import ModelCard, ModelList
from gateway.protocol.response_format import JsonSchemaSpec, ResponseFormat, check_json_mode_prompt
from gateway.protocol.tools import ToolCall, ToolCallDelta, ToolDefinition, check_tool_use
from gateway.protocol.unsupported import TOLERATED_PARAMETERS, UNSUPPORTED_PARAMETERS, reject_unsupported

__all__ = [
    "MODEL_PARAMS",
    "TOLERATED_PARAMETERS",
    "UNSUPPORTED_PARAMETERS",
    "ChatCompletionChoice",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatCompletionResponse",
    "ChatMessage",
    "ChoiceLogprobs",
    "ChunkChoice",
    "DeltaMessage",
    "JsonSchemaSpec",
    "ModelCard",
    "ModelList",
    "ModelParam",
    "ResponseFormat",
    "ResponseMessage",
    "StreamOptions",
    "TextContentPart",
    "TokenLogprobModel",
    "ToolCall",
    "ToolCallDelta",
    "ToolDefinition",
    "Usage",
    "check_json_mode_prompt",
    "check_tool_use",
    "reject_unsupported",
]
