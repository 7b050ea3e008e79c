"""Shared tiers and prices for the accounting unit tests (hand-checkable numbers)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import LiteLLMTierConfig, TierConfig, VLLMTierConfig

#: A tiny stand-in for litellm's price map: gpt-4o at $2.50 / $10.00 per million tokens
#: ($1.25 for prompt tokens read from its cache).
MODEL_COST: dict[str, dict[str, Any]] = {
    "gpt-4o": {
        "input_cost_per_token": 2.5e-06,
        "output_cost_per_token": 1e-05,
        "cache_read_input_token_cost": 1.25e-06,
        "litellm_provider": "openai",
    },
    "gpt-4o-mini": {"input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07, "litellm_provider": "openai"},
    "no-output-price": {"input_cost_per_token": 1e-06},
}


@pytest.fixture()
def hosted_tiers() -> dict[str, TierConfig]:
    """A self-hosted small tier and a hosted gpt-4o large tier."""
    return {
        "small": VLLMTierConfig(served_model_name="smollm2-135m-instruct"),
        "large": LiteLLMTierConfig(served_model_name="gpt-4o-large", model="openai/gpt-4o"),
    }
