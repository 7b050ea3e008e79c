"""``gen_ai.provider.name`` for a tier, in the GenAI conventions' well-known values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # gateway.config imports gateway.telemetry.config: no module-level import back.
    from gateway.config import TierConfig

__all__ = ["provider_name"]

#: litellm's provider prefixes mapped to the conventions' names where they differ.
_LITELLM_TO_SEMCONV = {
    "azure": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "bedrock": "aws.bedrock",
    "vertex_ai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "mistral": "mistral_ai",
    "xai": "x_ai",
    "watsonx": "ibm.watsonx.ai",
}


def provider_name(tier: TierConfig, model_cost: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The provider a tier's calls go to: ``vllm`` for self-hosted tiers, else litellm's provider.

    The provider comes from the model's ``provider/`` prefix, else from the price map's
    ``litellm_provider`` entry when given, else ``litellm``. The local stand-in is
    ``slm_router.standin``, so its calls are never mistaken for a hosted provider's.
    """
    from gateway.config import LiteLLMTierConfig

    if not isinstance(tier, LiteLLMTierConfig):
        return "vllm"
    if tier.uses_local_stand_in:
        return "slm_router.standin"
    provider: str | None = None
    if "/" in tier.model:
        provider = tier.model.split("/", 1)[0]
    elif model_cost is not None:
        entry = model_cost.get(tier.model)
        value = entry.get("litellm_provider") if isinstance(entry, Mapping) else None
        provider = value if isinstance(value, str) else None
    if not provider:
        return "litellm"
    return _LITELLM_TO_SEMCONV.get(provider, provider)
