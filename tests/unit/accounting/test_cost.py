"""Per-request cost, baseline and savings against hand-computed prices, to the nano-dollar.

Prices used (see conftest): small = $2.40 per GPU-hour at 2,000 tokens/s, i.e. $1/3
per million tokens either way; large = gpt-4o at $2.50 in / $10.00 out per million.
"""

from __future__ import annotations

import random

import pytest

from gateway.accounting import (
    HEADER_BASELINE_USD,
    HEADER_COST_USD,
    HEADER_SAVINGS_USD,
    AccountingConfig,
    Attempt,
    BaselineEstimateConfig,
    CostCalculator,
    GpuHourPriceConfig,
    PerMillionPriceConfig,
    RequestCost,
    format_usd,
    nanos_to_usd,
)
from gateway.config import TierConfig
from tests.unit.accounting.conftest import MODEL_COST

GPU = GpuHourPriceConfig(gpu_hour_usd=2.40, tokens_per_second=2000)


def calculator(tiers: dict[str, TierConfig], **estimates: BaselineEstimateConfig) -> CostCalculator:
    config = AccountingConfig(prices={"small": GPU}, baseline_estimate=estimates)
    return CostCalculator.from_config(config, tiers, model_cost=MODEL_COST)


def test_small_request_against_gpt4o_baseline(hosted_tiers: dict[str, TierConfig]) -> None:
    cost = calculator(hosted_tiers).cost("small", prompt_tokens=1000, completion_tokens=500)
    # small: 1,500 tokens x $1/3 per million = $0.0005 exactly.
    # baseline: 1,000 x $2.5e-6 + 500 x $1e-5 = $0.0025 + $0.005 = $0.0075.
    assert cost == RequestCost(1000, 500, cost_nanos=500_000, baseline_nanos=7_500_000)
    assert cost.savings_nanos == 7_000_000
    assert cost.cost_usd == 0.0005
    assert cost.baseline_usd == 0.0075
    assert cost.savings_usd == 0.007
    assert cost.savings_pct == pytest.approx(93.33333333333333)
    assert cost.headers() == {
        HEADER_COST_USD: "0.000500000",
        HEADER_BASELINE_USD: "0.007500000",
        HEADER_SAVINGS_USD: "0.007000000",
    }
    assert cost.as_dict() == {"cost_usd": 0.0005, "baseline_usd": 0.0075, "savings_usd": 0.007}


def test_tokenizer_and_length_ratios_scale_only_the_baseline(hosted_tiers: dict[str, TierConfig]) -> None:
    ratios = BaselineEstimateConfig(prompt_token_ratio=0.8, completion_token_ratio=1.2)
    calc = calculator(hosted_tiers, small=ratios, large=BaselineEstimateConfig(prompt_token_ratio=9))
    cost = calc.cost("small", 1000, 500)
    # baseline: 800 x $2.5e-6 + 600 x $1e-5 = $0.002 + $0.006.
    assert (cost.cost_nanos, cost.baseline_nanos) == (500_000, 8_000_000)
    # The served model name finds the same ratios.
    assert calc.cost("smollm2-135m-instruct", 1000, 500) == cost
    # The baseline itself: cost == baseline whatever ratios say, so savings are exactly 0.
    large = calc.cost("large", 1000, 500)
    assert (large.cost_nanos, large.baseline_nanos, large.savings_nanos) == (7_500_000, 7_500_000, 0)
    assert large.savings_pct == 0.0


def test_wasted_attempt_costs_but_does_not_raise_the_baseline(hosted_tiers: dict[str, TierConfig]) -> None:
    cost = calculator(hosted_tiers).cost("large", 1000, 500, wasted=[Attempt("small", 1000, 500)])
    assert (cost.cost_nanos, cost.baseline_nanos) == (8_000_000, 7_500_000)
    assert cost.savings_nanos == -500_000
    assert cost.headers()[HEADER_SAVINGS_USD] == "-0.000500000"


def test_rounding_is_half_even_once_per_request() -> None:
    from gateway.config import VLLMTierConfig

    tiers: dict[str, TierConfig] = {"only": VLLMTierConfig(served_model_name="m")}
    # $0.0015 per million tokens = 1.5 nano-dollars per token.
    price = PerMillionPriceConfig(input_usd_per_million=0.0015, output_usd_per_million=0.0015)
    calc = CostCalculator.from_config(AccountingConfig(prices={"only": price}), tiers)
    assert calc.cost("only", 1, 0).cost_nanos == 2  # 1.5 -> 2
    assert calc.cost("only", 0, 3).cost_nanos == 4  # 4.5 -> 4
    assert calc.cost("only", 1, 2).cost_nanos == 4  # 4.5 -> 4: rounded once, not per token kind
    assert calc.cost("only", 0, 0) == RequestCost(0, 0, 0, 0)
    assert calc.cost("only", 0, 0).savings_pct is None


def test_sum_of_reported_figures_equals_sum_of_nanos(hosted_tiers: dict[str, TierConfig]) -> None:
    calc = calculator(hosted_tiers)
    rng = random.Random(5)
    costs = [calc.cost(rng.choice(["small", "large"]), rng.randint(0, 4000), rng.randint(0, 2000)) for _ in range(5000)]
    exact = sum(c.cost_nanos for c in costs)
    assert abs(sum(c.cost_usd for c in costs) - nanos_to_usd(exact)) < 1e-9
    # The header strings parse back to the exact integers.
    assert sum(int(c.headers()[HEADER_COST_USD].replace(".", "")) for c in costs) == exact


def test_format_usd_and_validation(hosted_tiers: dict[str, TierConfig]) -> None:
    assert format_usd(0) == "0.000000000"
    assert format_usd(1) == "0.000000001"
    assert format_usd(12_345_678_901) == "12.345678901"
    assert format_usd(-1) == "-0.000000001"
    with pytest.raises(ValueError, match="negative"):
        calculator(hosted_tiers).cost("small", -1, 0)


def test_baseline_named_by_the_large_tiers_model_is_that_tier(hosted_tiers: dict[str, TierConfig]) -> None:
    config = AccountingConfig(
        baseline="openai/gpt-4o",
        prices={"small": GPU},
        baseline_estimate={"large": BaselineEstimateConfig(completion_token_ratio=3)},
    )
    calc = CostCalculator.from_config(config, hosted_tiers, model_cost=MODEL_COST)
    assert calc.cost("large", 1000, 500).savings_nanos == 0
    assert calc.cost("small", 1000, 500).baseline_nanos == 7_500_000


def test_cached_prompt_tokens_are_billed_at_the_cache_price(hosted_tiers: dict[str, TierConfig]) -> None:
    calc = calculator(hosted_tiers)
    # gpt-4o (litellm's map): 600 fresh x $2.5e-6 + 400 cached x $1.25e-6 + 500 x $1e-5
    # = $0.0015 + $0.0005 + $0.005 = $0.007; the baseline is the same call: same price.
    cost = calc.cost("large", prompt_tokens=1000, completion_tokens=500, cached_tokens=400)
    assert cost == RequestCost(1000, 500, cost_nanos=7_000_000, baseline_nanos=7_000_000)
    assert calc.cost("large", 1000, 500).cost_nanos == 7_500_000  # none cached: the full input price
    # More cached than prompt tokens (a confused upstream) is capped at the prompt.
    assert calc.cost("large", 100, 0, cached_tokens=1000).cost_nanos == 125_000
    # The small tier answered: what the baseline model would have had cached is unknown.
    small = calc.cost("small", prompt_tokens=1000, completion_tokens=500, cached_tokens=400)
    assert small.baseline_nanos == 7_500_000
    with pytest.raises(ValueError):
        calc.cost("large", 10, 1, cached_tokens=-1)


def test_a_configured_cached_input_price(hosted_tiers: dict[str, TierConfig]) -> None:
    listed = PerMillionPriceConfig(input_usd_per_million=2, output_usd_per_million=8, cached_input_usd_per_million=0.5)
    config = AccountingConfig(prices={"small": GPU, "large": listed})
    calc = CostCalculator.from_config(config, hosted_tiers, model_cost=MODEL_COST)
    # 800 x $2e-6 + 200 x $5e-7 + 100 x $8e-6 = $0.0016 + $0.0001 + $0.0008 = $0.0025
    assert calc.cost("large", 1000, 100, cached_tokens=200).cost_nanos == 2_500_000
    plain = PerMillionPriceConfig(input_usd_per_million=2, output_usd_per_million=8)
    calc = CostCalculator.from_config(AccountingConfig(prices={"small": GPU, "large": plain}), hosted_tiers)
    assert calc.cost("large", 1000, 100, cached_tokens=200).cost_nanos == 2_800_000  # no cache price: full
