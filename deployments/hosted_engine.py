"""Picks the engine for a hosted tier by its configured transport."""

from __future__ import annotations

from deployments.litellm_engine import LiteLLMChatEngine
from deployments.openai_http_engine import OpenAIHTTPChatEngine
from gateway.config import LiteLLMTierConfig
from gateway.engine import ChatEngine

__all__ = ["build_hosted_engine"]


def build_hosted_engine(tier: LiteLLMTierConfig, *, api_base: str | None = None) -> ChatEngine:
    """``litellm.acompletion`` by default; the pooled OpenAI-protocol client for ``transport: openai``."""
    if tier.transport == "openai":
        return OpenAIHTTPChatEngine(tier, api_base=api_base)
    return LiteLLMChatEngine(tier, api_base=api_base)
