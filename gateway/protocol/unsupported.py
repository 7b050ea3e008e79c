"""OpenAI chat parameters this gateway knows but does not implement.

Unknown fields are tolerated, as OpenAI's API tolerates them. A known parameter that would
change what the client gets back is different: ignoring ``logit_bias`` would return text the
client did not ask for, and the failure would surface far from its cause (and a cached answer
to the plain request would be served to it). Such a request is refused with 400
``unsupported_parameter`` naming the parameter. Each parameter's "off" values
(``logit_bias: {}``, ``function_call: "none"``, ...) are accepted, since SDKs and proxies send
them by default, and so are legacy ``functions`` that ``function_call: "none"`` declines.
Implemented elsewhere: ``tools`` (:mod:`gateway.protocol.tools`), ``response_format``
(:mod:`gateway.protocol.response_format`), ``logprobs``, ``top_logprobs`` and ``n``.
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
        "functions",
        (None, []),
        "the legacy 'functions' parameter is not supported; send the same definitions as 'tools'",
    ),
    (
        "function_call",
        (None, "none", "auto"),
        "the legacy 'function_call' parameter is not supported; use 'tool_choice' with 'tools'",
    ),
    (
        "logit_bias",
        (None, {}),
        "logit_bias is not supported: token ids differ between the models a request may be routed to",
    ),
    ("modalities", (None, ["text"]), "only the 'text' output modality is supported"),
    ("audio", (None,), "audio output is not supported"),
)


def reject_unsupported(request: ChatCompletionRequest) -> None:
    """Raise :class:`UnsupportedParameterError` if ``request`` asks for something not implemented
    (:data:`UNSUPPORTED_PARAMETERS`, which arrive as tolerated extra fields)."""
    extra = request.model_extra or {}
    for name, off_values, reason in UNSUPPORTED_PARAMETERS:
        if name in extra and extra[name] not in off_values and not _calls_declined(name, extra):
            raise UnsupportedParameterError(reason, param=name)


#: Legacy function definitions and the choice that can decline them for one request.
_DECLINED_BY = {"functions": "function_call"}


def _calls_declined(name: str, extra: Mapping[str, Any]) -> bool:
    # With function_call "none" the client asks for a text answer (agent frameworks send their
    # function list on every turn and decline it on some), so the definitions can be dropped.
    choice = _DECLINED_BY.get(name)
    return choice is not None and extra.get(choice) == "none"
