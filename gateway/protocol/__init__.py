"""OpenAI wire protocol: request and response models."""

from gateway.protocol.chat import (
    ChatCompletionChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatMessage,
    ChunkChoice,
    DeltaMessage,
    ResponseMessage,
    StreamOptions,
    TextContentPart,
    Usage,
)
from gateway.protocol.models import ModelCard, ModelList
from gateway.protocol.unsupported import UNSUPPORTED_PARAMETERS, reject_unsupported

__all__ = [
    "UNSUPPORTED_PARAMETERS",
    "ChatCompletionChoice",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatCompletionResponse",
    "ChatMessage",
    "ChunkChoice",
    "DeltaMessage",
    "ModelCard",
    "ModelList",
    "ResponseMessage",
    "StreamOptions",
    "TextContentPart",
    "Usage",
    "reject_unsupported",
]
