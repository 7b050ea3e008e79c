"""Configuration of cost accounting: prices, the baseline model and the Redis ledger.

These models are meant to sit under ``accounting:`` in the gateway YAML. Like the rest
of the config they forbid unknown keys and are frozen. Money is entered as decimal
numbers (USD) and converted with :func:`to_decimal`, so ``0.15`` means exactly 0.15
and not the nearest binary float.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "AccountingConfig",
    "BaselineEstimateConfig",
    "GpuHourPriceConfig",
    "LedgerConfig",
    "LiteLLMPriceConfig",
    "PerMillionPriceConfig",
    "PriceConfig",
    "to_decimal",
]


def to_decimal(value: float | int | str | Decimal) -> Decimal:
    """The decimal a human meant by ``value``.

    ``Decimal(0.1)`` is 0.1000000000000000055...; ``repr`` gives the shortest string
    that round-trips, which is what was written in the YAML or the price map.
    """
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PerMillionPriceConfig(_Strict):
    """A list price in USD per million tokens (hosted models, or a negotiated rate)."""

    kind: Literal["per_million"] = "per_million"
    input_usd_per_million: float = Field(ge=0)
    output_usd_per_million: float = Field(ge=0)
    #: Prompt tokens the provider served from its prompt cache (OpenAI, Anthropic and others
    #: bill them at a discount, and report them); null: the input price.
    cached_input_usd_per_million: float | None = Field(None, ge=0)


class GpuHourPriceConfig(_Strict):
    """A self-hosted model priced by what its GPUs cost, spread over measured throughput.

    USD per token = ``gpu_hour_usd * gpus / (3600 * tokens_per_second * utilization)``,
    the same for prompt and completion tokens. ``tokens_per_second`` is the *total*
    (prompt + completion) token throughput of one replica under representative load,
    as vLLM's serving benchmark reports it ("Total Token throughput"); ``utilization``
    is the share of the hour that capacity is actually used, so idle time is paid for
    by the tokens that are served.
    """

    kind: Literal["gpu_hour"] = "gpu_hour"
    #: Cost of one GPU for one hour (cloud list price, or amortised purchase + power).
    gpu_hour_usd: float = Field(gt=0)
    #: GPUs one replica holds.
    gpus: float = Field(1.0, gt=0)
    #: Measured total tokens per second of one replica.
    tokens_per_second: float = Field(gt=0)
    #: Average fraction of the measured capacity that real traffic uses.
    utilization: float = Field(1.0, gt=0, le=1)


class LiteLLMPriceConfig(_Strict):
    """Price a tier as a model in litellm's bundled price map (e.g. the stand-in as ``gpt-4o``)."""

    kind: Literal["litellm"] = "litellm"
    #: A key of ``litellm.model_cost``, for example ``gpt-4o``.
    model: str = Field(min_length=1)


PriceConfig = Annotated[PerMillionPriceConfig | GpuHourPriceConfig | LiteLLMPriceConfig, Field(discriminator="kind")]


class BaselineEstimateConfig(_Strict):
    """How a tier's token counts translate into the baseline model's token counts.

    Tokenizers differ (SmolLM2's 49k vocabulary splits text into more tokens than
    ``o200k``), and a large model may answer more or less verbosely. Measure both
    ratios offline on a sample of real traffic; 1.0 assumes the same counts.
    """

    #: Baseline prompt tokens per prompt token of this tier.
    prompt_token_ratio: float = Field(1.0, gt=0)
    #: Baseline completion tokens per completion token this tier produced.
    completion_token_ratio: float = Field(1.0, gt=0)


class LedgerConfig(_Strict):
    """Layout of the durable Redis ledger."""

    #: Every ledger key is ``{<key_prefix>}:...``; the braces make the whole ledger
    #: one Redis Cluster hash slot, so one request's increments are one MULTI.
    key_prefix: str = Field("slm-router:acct", min_length=1)
    #: Hourly buckets live this long after their last write.
    hourly_retention_days: int = Field(35, ge=1)
    #: Daily rollups live this long after their last write.
    daily_retention_days: int = Field(800, ge=1)

    @field_validator("key_prefix")
    @classmethod
    def _no_braces(cls, value: str) -> str:
        if "{" in value or "}" in value:
            raise ValueError("key_prefix must not contain braces (the ledger adds the hash tag itself)")
        return value


class AccountingConfig(_Strict):
    """Cost and savings accounting."""

    enabled: bool = True
    #: What a request would have cost without routing: a tier name, a served model
    #: name, or a litellm model name. ``None``: the last (most expensive) tier.
    baseline: str | None = None
    #: Price overrides keyed by tier name, served model name or litellm model name.
    #: Self-hosted (vLLM) tiers must have one; litellm tiers default to litellm's map.
    prices: dict[str, PriceConfig] = Field(default_factory=dict)
    #: Token-count translation to the baseline model, keyed by tier name.
    baseline_estimate: dict[str, BaselineEstimateConfig] = Field(default_factory=dict)
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
