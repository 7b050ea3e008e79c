"""OpenAI chat parameters this gateway knows but does not implement.

Unknown fields are tolerated, as OpenAI's API tolerates them. A known parameter that would
change what the client gets back is different: ignoring ``modalities: ["audio"]`` would
return text where the client expects audio, and the failure would surface far from its cause
(and a cached answer to the plain request would be served to it). Such a request is refused
with 400 ``unsupported_parameter`` naming the parameter. Each parameter's "off" values
(``modalities: ["text"]``, ``audio: null``, ...) are accepted, since SDKs and proxies send
them by default. Implemented elsewhere: ``tools`` (:mod:`gateway.protocol.tools`), the legacy
``functions`` and ``function_call`` (:mod:`gateway.protocol.legacy_functions`),
``response_format`` (:mod:`gateway.protocol.response_format`), ``logprobs``,
``top_logprobs``, ``n``, ``logit_bias`` (for a request that names a model),
``reasoning_effort`` and ``verbosity``, which go to the tiers whose model takes them
(:data:`gateway.protocol.chat.MODEL_PARAMS`), and vLLM's ``structured_outputs``
(:mod:`gateway.protocol.structured_outputs`), which cannot be combined with another
constraint on the answer.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import InvalidRequestError, UnsupportedParameterError
from gateway.protocol.chat import ChatCompletionRequest

__all__ = ["TOLERATED_PARAMETERS", "UNSUPPORTED_PARAMETERS", "reject_unsupported"]


#: ``(parameter, its "off" values, why any other value is refused)``, checked in this order.
UNSUPPORTED_PARAMETERS: tuple[tuple[str, tuple[Any, ...], str], ...] = (
    ("modalities", (None, ["text"]), "only the 'text' output modality is supported"),
    ("audio", (None,), "audio output is not supported"),
    # Answering without it would look like a moderated answer that was never moderated.
    ("moderation", (None,), "moderated completions are not supported: moderate input and output before the gateway"),
    ("web_search_options", (None,), "web search is not supported: no tier has a search tool"),
    # vLLM's spellings before 0.12, which vLLM itself now ignores: the answer would be unconstrained.
    *(
        (f"guided_{kind}", (None,), f'guided_{kind} is vLLM\'s old name: send structured_outputs: {{"{kind}": ...}}')
        for kind in ("json", "regex", "choice", "grammar")
    ),
)

#: OpenAI chat parameters accepted and not acted on, because they do not change what a client
#: parses: tags (``metadata``, ``safety_identifier``), and hints on latency, price or caching.
#: ``store`` is implemented (the labelling sample), so it is not here.
TOLERATED_PARAMETERS = frozenset(
    {
        "metadata",
        "safety_identifier",
        "service_tier",
        "prediction",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
    }
)


def reject_unsupported(request: ChatCompletionRequest) -> None:
    """Raise :class:`UnsupportedParameterError` if ``request`` asks for something not implemented
    (:data:`UNSUPPORTED_PARAMETERS`, which arrive as tolerated extra fields), and
    :class:`InvalidRequestError` for ``structured_outputs`` beside another constraint."""
    extra = request.model_extra or {}
    for name, off_values, reason in UNSUPPORTED_PARAMETERS:
        if name in extra and extra[name] not in off_values:
            raise UnsupportedParameterError(reason, param=name)
    if request.structured_outputs is not None:
        # Each constrains the whole answer; vLLM would keep one and drop the other unannounced.
        if request.response_format is not None and request.response_format.type != "text":
            raise InvalidRequestError(
                "structured_outputs and response_format both constrain the answer: send one of them",
                param="structured_outputs",
            )
        if request.calls_tools():
            raise InvalidRequestError(
                "structured_outputs constrains the answer to text, so it cannot come with tools to call "
                "(send tool_choice: none, or no tools)",
                param="structured_outputs",
            )
