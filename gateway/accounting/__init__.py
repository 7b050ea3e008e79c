"""Cost and savings accounting: prices, per-request cost, and the durable Redis ledger.

Importing this package is cheap: litellm's price map is read only when a
:class:`PriceBook` is built from config, and Redis is only touched by a :class:`Ledger`.
"""

from gateway.accounting.config import (
    AccountingConfig,
    BaselineEstimateConfig,
    GpuHourPriceConfig,
    LedgerConfig,
    LiteLLMPriceConfig,
    PerMillionPriceConfig,
    PriceConfig,
)
from gateway.accounting.cost import (
    HEADER_BASELINE_USD,
    HEADER_COST_USD,
    HEADER_SAVINGS_USD,
    NANOS_PER_USD,
    Attempt,
    CostCalculator,
    RequestCost,
    format_usd,
    nanos_to_usd,
    usd_to_nanos,
)
from gateway.accounting.identity import key_id_from_secret
from gateway.accounting.layout import HashIncrement, LedgerLayout, SeriesKey
from gateway.accounting.ledger import Ledger, LedgerWriter, RedisLedgerWriter
from gateway.accounting.prices import Price, PriceBook, UnknownPriceError, load_litellm_model_cost
from gateway.accounting.recorder import CostRecorder
from gateway.accounting.summary import Counts, LedgerSummary, SeriesCounts, SummaryRow

__all__ = [
    "HEADER_BASELINE_USD",
    "HEADER_COST_USD",
    "HEADER_SAVINGS_USD",
    "NANOS_PER_USD",
    "AccountingConfig",
    "Attempt",
    "BaselineEstimateConfig",
    "CostCalculator",
    "CostRecorder",
    "Counts",
    "GpuHourPriceConfig",
    "HashIncrement",
    "Ledger",
    "LedgerConfig",
    "LedgerLayout",
    "LedgerSummary",
    "LedgerWriter",
    "LiteLLMPriceConfig",
    "PerMillionPriceConfig",
    "Price",
    "PriceBook",
    "PriceConfig",
    "RedisLedgerWriter",
    "RequestCost",
    "SeriesCounts",
    "SeriesKey",
    "SummaryRow",
    "UnknownPriceError",
    "format_usd",
    "key_id_from_secret",
    "load_litellm_model_cost",
    "nanos_to_usd",
    "usd_to_nanos",
]
