"""Price resolution: litellm's map, config overrides, GPU-hour amortisation, start-up errors."""

from __future__ import annotations

import sys
from decimal import Decimal

import pytest

from gateway.accounting import (
    AccountingConfig,
    BaselineEstimateConfig,
    GpuHourPriceConfig,
    LiteLLMPriceConfig,
    PerMillionPriceConfig,
    Price,
    PriceBook,
    UnknownPriceError,
    load_litellm_model_cost,
)
from gateway.accounting.prices import litellm_price
from gateway.config import LiteLLMTierConfig, TierConfig, VLLMTierConfig
from gateway.errors import ConfigError
from tests.unit.accounting.conftest import MODEL_COST

GPU = GpuHourPriceConfig(gpu_hour_usd=2.40, tokens_per_second=2000)


def test_per_million_is_exact_decimal() -> None:
    price = Price.per_million(0.15, 0.60)
    assert price.input_per_token == Decimal("0.00000015")
    assert price.output_per_token == Decimal("0.0000006")
    assert price.usd_per_million() == (Decimal("0.15"), Decimal("0.6"))


def test_gpu_hour_amortised_over_throughput() -> None:
    # $2.40 per hour / (3600 s * 2000 tokens/s) = $2.40 / 7.2M tokens = 1/3 micro-dollar per token.
    price = Price.from_gpu_hour(GPU)
    assert price.input_per_token == price.output_per_token
    assert abs(price.input_per_token - Decimal(1) / Decimal(3_000_000)) < Decimal("1e-30")
    # Two GPUs at half utilisation cost four times as much per token.
    busy = Price.from_gpu_hour(GpuHourPriceConfig(gpu_hour_usd=2.40, gpus=2, tokens_per_second=2000, utilization=0.5))
    assert abs(busy.output_per_token - 4 * price.output_per_token) < Decimal("1e-30")


def test_book_prices_tiers_from_litellm_and_config(hosted_tiers: dict[str, TierConfig]) -> None:
    config = AccountingConfig(prices={"small": GPU})
    book = PriceBook.from_config(config, hosted_tiers, model_cost=MODEL_COST)
    # "openai/gpt-4o" falls back to litellm's "gpt-4o" entry.
    assert book.resolve("large") == Price(
        Decimal("0.0000025"), Decimal("0.00001"), "litellm:gpt-4o", cached_input_per_token=Decimal("0.00000125")
    )
    # A model whose map entry has no cache price bills cached prompt tokens at the input price.
    mini = litellm_price(MODEL_COST, "gpt-4o-mini")
    assert mini is not None and mini.cached_input_per_token is None
    assert book.resolve("gpt-4o-large") is book.resolve("large")
    assert book.resolve("smollm2-135m-instruct") is book.resolve("small")
    assert book.resolve("small").source == "accounting.prices.small"
    assert book.baseline_name == "large"  # the last tier by default
    assert book.baseline is book.resolve("large")
    with pytest.raises(UnknownPriceError):
        book.resolve("nope")


def test_override_by_model_name_beats_litellm(hosted_tiers: dict[str, TierConfig]) -> None:
    config = AccountingConfig(
        prices={
            "small": PerMillionPriceConfig(input_usd_per_million=0.02, output_usd_per_million=0.05),
            "openai/gpt-4o": PerMillionPriceConfig(input_usd_per_million=2.0, output_usd_per_million=8.0),
        }
    )
    book = PriceBook.from_config(config, hosted_tiers, model_cost=MODEL_COST)
    assert book.resolve("large").input_per_token == Decimal("0.000002")
    assert book.resolve("small").output_per_token == Decimal("0.00000005")


def test_standin_priced_as_a_hosted_model_and_baseline_by_model_name() -> None:
    tiers: dict[str, TierConfig] = {
        "small": VLLMTierConfig(served_model_name="smollm2-135m-instruct"),
        "large": LiteLLMTierConfig(
            served_model_name="local-large-standin", model="openai/local-large-standin", api_base="standin"
        ),
    }
    config = AccountingConfig(
        baseline="gpt-4o-mini", prices={"small": GPU, "large": LiteLLMPriceConfig(model="gpt-4o")}
    )
    book = PriceBook.from_config(config, tiers, model_cost=MODEL_COST)
    assert book.resolve("local-large-standin").source == "litellm:gpt-4o"
    assert book.baseline == Price(Decimal("1.5E-7"), Decimal("6E-7"), "litellm:gpt-4o-mini")


def test_every_gap_is_one_config_error() -> None:
    tiers: dict[str, TierConfig] = {
        "small": VLLMTierConfig(served_model_name="smollm2-135m-instruct"),
        "standin": LiteLLMTierConfig(served_model_name="sb", model="openai/local-large-standin", api_base="standin"),
        "large": LiteLLMTierConfig(served_model_name="mystery", model="acme/unknown-model"),
        "half": LiteLLMTierConfig(served_model_name="half", model="no-output-price"),
    }
    config = AccountingConfig(
        prices={"smal": GPU, "other": LiteLLMPriceConfig(model="not-in-map")},
        baseline_estimate={"tiny": BaselineEstimateConfig(prompt_token_ratio=1.1)},
    )
    with pytest.raises(ConfigError) as caught:
        PriceBook.from_config(config, tiers, model_cost=MODEL_COST)
    message = caught.value.message
    assert "tier 'small' is self-hosted and has no price: set accounting.prices.small" in message
    assert "tier 'standin' is the local stand-in" in message
    assert "hosted model 'acme/unknown-model' is not in litellm's price map" in message
    assert "hosted model 'no-output-price'" in message
    assert "accounting.prices.smal: matches no tier" in message
    assert "accounting.prices.other: matches no tier" in message
    assert "accounting.baseline_estimate.tiny: is not a tier" in message
    assert "the baseline '" not in message  # the unpriced last tier is reported once


def test_unknown_baseline_model_is_a_config_error(hosted_tiers: dict[str, TierConfig]) -> None:
    config = AccountingConfig(baseline="claude-9", prices={"small": GPU})
    with pytest.raises(ConfigError, match="the baseline 'claude-9' is neither a tier nor a model"):
        PriceBook.from_config(config, hosted_tiers, model_cost=MODEL_COST)


def test_unused_price_keys_are_warnings(hosted_tiers: dict[str, TierConfig]) -> None:
    # The default config prices the stand-in by its model; SLM_ROUTER_LARGE_MODEL=gpt-4o
    # swaps that model out, and start-up must still succeed (with litellm's gpt-4o price).
    config = AccountingConfig(
        prices={"small": GPU, "openai/local-large-standin": LiteLLMPriceConfig(model="gpt-4o-mini")}
    )
    book = PriceBook.from_config(config, hosted_tiers, model_cost=MODEL_COST)
    assert book.resolve("large").source == "litellm:gpt-4o"
    assert book.warnings == [
        "accounting.prices.openai/local-large-standin: matches no tier, served model, tier model or the baseline;"
        " ignored"
    ]


def test_explicit_prices_never_read_the_map() -> None:
    tiers: dict[str, TierConfig] = {"small": VLLMTierConfig(served_model_name="s")}

    def loader() -> dict[str, dict[str, float]]:
        raise AssertionError("the price map was read")

    book = PriceBook.from_config(AccountingConfig(prices={"small": GPU}), tiers, model_cost=loader)
    assert book.baseline_name == "small"


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        GpuHourPriceConfig(gpu_hour_usd=1, tokens_per_second=0)
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        AccountingConfig.model_validate({"pricez": {}})
    with pytest.raises(ValueError, match="braces"):
        AccountingConfig.model_validate({"ledger": {"key_prefix": "{x}"}})
    parsed = AccountingConfig.model_validate(
        {"prices": {"small": {"kind": "gpu_hour", "gpu_hour_usd": 1.2, "tokens_per_second": 900}}}
    )
    assert isinstance(parsed.prices["small"], GpuHourPriceConfig)


def test_bundled_litellm_map_is_read_without_importing_litellm() -> None:
    already_imported = "litellm" in sys.modules
    model_cost = load_litellm_model_cost()
    if not already_imported:
        assert "litellm" not in sys.modules
    entry = model_cost["gpt-4o"]
    assert entry["input_cost_per_token"] == 2.5e-06
    assert entry["output_cost_per_token"] == 1e-05
