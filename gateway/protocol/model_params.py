"""Request parameters only some models take, and the tiers that may be sent them.

OpenAI's reasoning models and GPT-5 take ``reasoning_effort`` and ``verbosity``; vLLM takes
its own sampling extensions (``ignore_eos``, ``min_tokens``, ``top_k``, ``min_p``,
``repetition_penalty``), which benchmark tools such as ``vllm bench serve`` send. A tier lists
the ones its model takes (hosted tiers in ``model_params``; vLLM tiers take vLLM's), and only
those tiers are sent them: a request naming another model is refused, and a routed request
its tier cannot honour is answered without them, saying so (``x-slm-router-dropped-params``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from gateway.protocol.structured_outputs import StructuredOutputs

__all__ = [
    "MODEL_PARAMS",
    "TOKEN_ID_PARAMS",
    "VLLM_DECODING",
    "VLLM_PARAMS",
    "ModelParam",
    "ReasoningEffort",
    "VLLMSamplingFields",
    "Verbosity",
]

ModelParam = Literal[
    "reasoning_effort", "verbosity", "ignore_eos", "min_tokens", "top_k", "min_p", "repetition_penalty"
]
#: Every model-specific parameter, in the order they are checked.
MODEL_PARAMS: tuple[ModelParam, ...] = (
    "reasoning_effort",
    "verbosity",
    "ignore_eos",
    "min_tokens",
    "top_k",
    "min_p",
    "repetition_penalty",
)
#: The ones vLLM takes (so every vLLM tier does).
VLLM_PARAMS: frozenset[str] = frozenset({"ignore_eos", "min_tokens", "top_k", "min_p", "repetition_penalty"})
#: vLLM's decoding extensions, which no other tier can honour (see :meth:`VLLMSamplingFields.vllm_decoding`).
VLLM_DECODING = ("structured_outputs", "bad_words", "allowed_token_ids", "stop_token_ids")
#: Of those, the ones made of token ids, which differ between models: a request naming a model only.
TOKEN_ID_PARAMS = frozenset({"allowed_token_ids", "stop_token_ids"})

#: OpenAI adds effort values ("xhigh", "max") faster than gateways are released, so any short
#: word passes here and the model refuses one it does not know.
ReasoningEffort = Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")]
Verbosity = Literal["low", "medium", "high"]
_Word = Annotated[str, Field(min_length=1, max_length=1000)]


class VLLMSamplingFields(BaseModel):
    """vLLM's sampling extensions, as vLLM's OpenAI server reads them from a request body."""

    #: Generate until ``max_tokens`` even past the end-of-sequence token (benchmarks).
    ignore_eos: bool | None = None
    #: Generate at least this many tokens before a stop or end-of-sequence may end the answer.
    min_tokens: Annotated[int, Field(ge=0)] | None = None
    #: Sample among the ``top_k`` most likely tokens (-1 or 0: all of them).
    top_k: Annotated[int, Field(ge=-1)] | None = None
    #: Drop tokens less likely than ``min_p`` times the most likely one.
    min_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    #: Above 1 discourages repeating tokens of the prompt and the answer; 1: off.
    repetition_penalty: Annotated[float, Field(gt=0.0, le=2.0)] | None = None
    #: Decoding held to a choice, regex, grammar or schema: only vLLM tiers serve a request
    #: with it (see :mod:`gateway.protocol.structured_outputs`), so it is no model parameter.
    structured_outputs: StructuredOutputs | None = None
    #: Token ids (the model's own) that end the answer, beside ``stop``.
    stop_token_ids: Annotated[list[Annotated[int, Field(ge=0)]], Field(max_length=1024)] | None = None
    #: The only token ids (the model's own) the answer may be made of.
    allowed_token_ids: Annotated[list[Annotated[int, Field(ge=0)]], Field(max_length=262_144)] | None = None
    #: Words the answer must not contain.
    bad_words: Annotated[list[_Word], Field(max_length=1024)] | None = None

    def vllm_decoding(self) -> list[str]:
        """The decoding extensions of vLLM's that are set (an empty list asks for nothing): only
        vLLM tiers serve a request with one, since an answer without it would break what the
        client relies on (a format, a stop, a ban)."""
        return [name for name in VLLM_DECODING if getattr(self, name)]

    def vllm_params(self) -> dict[str, Any]:
        """The extensions set to something other than vLLM's default (which asks for nothing)."""
        values: dict[str, Any] = {
            "ignore_eos": True if self.ignore_eos else None,
            "min_tokens": self.min_tokens or None,
            "top_k": self.top_k if self.top_k not in (None, -1, 0) else None,
            "min_p": self.min_p or None,
            "repetition_penalty": self.repetition_penalty if self.repetition_penalty not in (None, 1.0) else None,
        }
        return {name: value for name, value in values.items() if value is not None}
