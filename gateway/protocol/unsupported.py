"""OpenAI chat parameters this gateway knows but does not implement.

Unknown fields are tolerated, as OpenAI's API tolerates them. A known parameter that would
change what the client gets back is different: ignoring ``tools`` or
``response_format: {"type": "json_object"}`` would return plain text to a client that will
parse a tool call or JSON, and the failure would surface far from its cause (and a cached
answer to the plain request would be served to it). Such a request is refused with 400
``unsupported_parameter`` naming the parameter. Each parameter's "off" values (``tools: []``,
``tool_choice: "none"``, ``response_format: {"type": "text"}``, ``logprobs: false``, ...)
are accepted, since SDKs and proxies send them by default, and so are tool definitions that
``tool_choice: "none"`` declines (the answer is text, as asked; the definitions are dropped).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.errors import UnsupportedParameterError
from gateway.protocol.chat import ChatCompletionRequest

__all__ = ["UNSUPPORTED_PARAMETERS", "reject_unsupported"]


def _set(value: Any) -> bool:
    return value is not None and value != [] and value != {}


def _choice_made(value: Any) -> bool:
    return value is not None and value not in ("none", "auto")


def _not_text_format(value: Any) -> bool:
    return value is not None and not (isinstance(value, Mapping) and value.get("type") == "text")


def _true(value: Any) -> bool:
    return value not in (None, False)


def _positive(value: Any) -> bool:
    return value is not None and value != 0


def _not_text_only(value: Any) -> bool:
    return value is not None and value != ["text"]


#: ``(parameter, is it switched on?, why it is refused)``, checked in this order.
UNSUPPORTED_PARAMETERS: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    (
        "tools",
        _set,
        "tool calling is not supported: every tier answers with text only; send the request without 'tools'",
    ),
    ("functions", _set, "function calling ('functions') is not supported: every tier answers with text only"),
    ("tool_choice", _choice_made, "'tool_choice' needs tool calling, which is not supported; omit it or use 'none'"),
    ("function_call", _choice_made, "'function_call' needs function calling, which is not supported"),
    (
        "response_format",
        _not_text_format,
        "only response_format {'type': 'text'} is supported; JSON mode and structured outputs are not",
    ),
    ("logprobs", _true, "logprobs are not supported"),
    ("top_logprobs", _positive, "top_logprobs is not supported (logprobs are not supported)"),
    (
        "logit_bias",
        _set,
        "logit_bias is not supported: token ids differ between the models a request may be routed to",
    ),
    ("modalities", _not_text_only, "only the 'text' output modality is supported"),
    ("audio", _set, "audio output is not supported"),
)


def reject_unsupported(request: ChatCompletionRequest) -> None:
    """Raise :class:`UnsupportedParameterError` if ``request`` asks for something not implemented.

    Covers ``n > 1`` and :data:`UNSUPPORTED_PARAMETERS` (which arrive as tolerated extra fields).
    """
    if request.n is not None and request.n > 1:
        raise UnsupportedParameterError("n > 1 is not supported; send separate requests", param="n")
    extra = request.model_extra or {}
    for name, switched_on, reason in UNSUPPORTED_PARAMETERS:
        if name in extra and switched_on(extra[name]) and not _calls_declined(name, extra):
            raise UnsupportedParameterError(reason, param=name)


#: Tool definitions and the choice that can decline them for one request.
_DECLINED_BY = {"tools": "tool_choice", "functions": "function_call"}


def _calls_declined(name: str, extra: Mapping[str, Any]) -> bool:
    # With tool_choice "none" the client asks for a text answer (agent frameworks send their
    # tool list on every turn and decline it on some), so the definitions can be dropped.
    choice = _DECLINED_BY.get(name)
    return choice is not None and extra.get(choice) == "none"
