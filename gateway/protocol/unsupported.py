"""OpenAI chat parameters this gateway knows but does not implement.

Unknown fields are tolerated, as OpenAI's API tolerates them. A known parameter that would
change what the client gets back is different: ignoring ``tools`` would return plain text
to a client that will parse a tool call, and the failure would surface far from its cause
(and a cached answer to the plain request would be served to it). Such a request is refused
with 400 ``unsupported_parameter`` naming the parameter. Each parameter's "off" values
(``tools: []``, ``tool_choice: "none"``, ``logit_bias: {}``, ...) are accepted, since SDKs
and proxies send them by default, and so are tool definitions that ``tool_choice: "none"``
declines (the answer is text, as asked; the definitions are dropped). ``response_format`` is
implemented (:mod:`gateway.protocol.response_format`), and so are ``logprobs`` and ``top_logprobs``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.errors import UnsupportedParameterError
from gateway.protocol.chat import ChatCompletionRequest

__all__ = ["UNSUPPORTED_PARAMETERS", "reject_unsupported"]


#: ``(parameter, its "off" values, why any other value is refused)``, checked in this order.
UNSUPPORTED_PARAMETERS: tuple[tuple[str, tuple[Any, ...], str], ...] = (
    (
        "tools",
        (None, []),
        "tool calling is not supported: every tier answers with text only; send the request without 'tools'",
    ),
    ("functions", (None, []), "function calling ('functions') is not supported: every tier answers with text only"),
    (
        "tool_choice",
        (None, "none", "auto"),
        "'tool_choice' needs tool calling, which is not supported; omit it or use 'none'",
    ),
    ("function_call", (None, "none", "auto"), "'function_call' needs function calling, which is not supported"),
    (
        "logit_bias",
        (None, {}),
        "logit_bias is not supported: token ids differ between the models a request may be routed to",
    ),
    ("modalities", (None, ["text"]), "only the 'text' output modality is supported"),
    ("audio", (None,), "audio output is not supported"),
)


def reject_unsupported(request: ChatCompletionRequest) -> None:
    """Raise :class:`UnsupportedParameterError` if ``request`` asks for something not implemented.

    Covers ``n > 1`` and :data:`UNSUPPORTED_PARAMETERS` (which arrive as tolerated extra fields).
    """
    if request.n is not None and request.n > 1:
        raise UnsupportedParameterError("n > 1 is not supported; send separate requests", param="n")
    extra = request.model_extra or {}
    for name, off_values, reason in UNSUPPORTED_PARAMETERS:
        if name in extra and extra[name] not in off_values and not _calls_declined(name, extra):
            raise UnsupportedParameterError(reason, param=name)


#: Tool definitions and the choice that can decline them for one request.
_DECLINED_BY = {"tools": "tool_choice", "functions": "function_call"}


def _calls_declined(name: str, extra: Mapping[str, Any]) -> bool:
    # With tool_choice "none" the client asks for a text answer (agent frameworks send their
    # tool list on every turn and decline it on some), so the definitions can be dropped.
    choice = _DECLINED_BY.get(name)
    return choice is not None and extra.get(choice) == "none"
