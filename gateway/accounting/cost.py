"""Per-request cost, baseline and savings, exact to the nano-dollar.

Money is computed in :class:`~decimal.Decimal` and rounded once per request to an
integer number of nano-dollars (1e-9 USD, round-half-even). Those integers are what
the ledger adds up in Redis and what clients see (as exact decimal strings in headers,
or as the closest float in JSON), so any sum of per-request figures equals the
ledger's total exactly, however many requests there are.

The baseline is what the baseline (large) model would have charged for the same
request. Its token counts are estimated from the serving tier's counts:

* prompt tokens: the tier's prompt tokens x ``prompt_token_ratio`` (tokenizers differ;
  the ratio is measured offline, 1.0 by default);
* completion tokens: the completion tokens actually produced x
  ``completion_token_ratio`` (how much more or less a large model would say; 1.0 by
  default, i.e. "the same answer length").

A request served by the baseline itself has ``baseline == cost`` and zero savings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import TYPE_CHECKING, Any

from gateway.accounting.config import AccountingConfig, BaselineEstimateConfig, to_decimal
from gateway.accounting.prices import PRICE_PRECISION, ModelCostMap, Price, PriceBook

if TYPE_CHECKING:
    # Only for annotations: gateway.config will import this package's config models.
    from gateway.config import TierConfig

__all__ = [
    "HEADER_BASELINE_USD",
    "HEADER_COST_USD",
    "HEADER_SAVINGS_USD",
    "NANOS_PER_USD",
    "Attempt",
    "CostCalculator",
    "CostFigures",
    "RequestCost",
    "format_usd",
    "nanos_to_usd",
    "usd_to_nanos",
]

NANOS_PER_USD = 1_000_000_000
_NANOS = Decimal(NANOS_PER_USD)

HEADER_COST_USD = "x-slm-router-cost-usd"
HEADER_BASELINE_USD = "x-slm-router-baseline-usd"
HEADER_SAVINGS_USD = "x-slm-router-savings-usd"


def usd_to_nanos(amount: Decimal) -> int:
    """Round a USD amount to whole nano-dollars (half-even, so rounding has no bias)."""
    with localcontext(prec=PRICE_PRECISION):
        return int((amount * _NANOS).to_integral_value(rounding=ROUND_HALF_EVEN))


def nanos_to_usd(nanos: int) -> float:
    """The float closest to ``nanos`` x 1e-9 (int / int division is correctly rounded)."""
    return nanos / NANOS_PER_USD


def format_usd(nanos: int) -> str:
    """The exact decimal string of ``nanos`` x 1e-9 USD, e.g. ``"0.000123450"``."""
    sign = "-" if nanos < 0 else ""
    whole, frac = divmod(abs(nanos), NANOS_PER_USD)
    return f"{sign}{whole}.{frac:09d}"


class CostFigures:
    """The savings and USD figures of ``cost_nanos`` and ``baseline_nanos``, derived in one place.

    A base for the records that carry the two integers (one request, or a sum of them), so every
    consumer rounds the same way.
    """

    __slots__ = ()

    cost_nanos: int
    baseline_nanos: int

    @property
    def savings_nanos(self) -> int:
        """Baseline minus cost; negative when routing cost more (e.g. a wasted escalation)."""
        return self.baseline_nanos - self.cost_nanos

    @property
    def cost_usd(self) -> float:
        """What was spent, in USD."""
        return nanos_to_usd(self.cost_nanos)

    @property
    def baseline_usd(self) -> float:
        """What the baseline model would have charged, in USD."""
        return nanos_to_usd(self.baseline_nanos)

    @property
    def savings_usd(self) -> float:
        """``baseline_usd - cost_usd``, rounded once from the exact integers."""
        return nanos_to_usd(self.savings_nanos)

    @property
    def savings_pct(self) -> float | None:
        """Savings as a percentage of the baseline (``None`` when the baseline is zero)."""
        if self.baseline_nanos == 0:
            return None
        return 100.0 * self.savings_nanos / self.baseline_nanos


@dataclass(frozen=True, slots=True)
class RequestCost(CostFigures):
    """What one request cost, what the baseline would have cost, and the difference.

    The ``*_nanos`` integers are the source of truth; the ``*_usd`` floats are derived
    from them so every consumer rounds the same way.
    """

    prompt_tokens: int
    completion_tokens: int
    cost_nanos: int
    baseline_nanos: int

    def headers(self) -> dict[str, str]:
        """Response headers with the exact decimal figures."""
        return {
            HEADER_COST_USD: format_usd(self.cost_nanos),
            HEADER_BASELINE_USD: format_usd(self.baseline_nanos),
            HEADER_SAVINGS_USD: format_usd(self.savings_nanos),
        }

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures, e.g. for an extension of the response's ``usage``."""
        return {
            "cost_usd": self.cost_usd,
            "baseline_usd": self.baseline_usd,
            "savings_usd": self.savings_usd,
        }


@dataclass(frozen=True, slots=True)
class Attempt:
    """An upstream call whose answer was thrown away (e.g. before an escalation).

    Its tokens were paid for, so its cost is added to the request's cost, but not to
    the baseline: without routing, only the baseline call would have happened.
    """

    tier: str
    prompt_tokens: int
    completion_tokens: int


def _check_tokens(prompt_tokens: int, completion_tokens: int) -> None:
    if prompt_tokens < 0 or completion_tokens < 0:
        raise ValueError(f"token counts must not be negative: {prompt_tokens}, {completion_tokens}")


def _charge(
    price: Price, prompt_tokens: Decimal, completion_tokens: Decimal, cached_tokens: Decimal = Decimal(0)
) -> Decimal:
    # Cached prompt tokens are part of prompt_tokens, billed at the cache price where there is one.
    cached = min(cached_tokens, prompt_tokens)
    cached_price = price.cached_input_per_token if price.cached_input_per_token is not None else price.input_per_token
    return (
        (prompt_tokens - cached) * price.input_per_token
        + cached * cached_price
        + completion_tokens * price.output_per_token
    )


class CostCalculator:
    """Prices requests against a :class:`PriceBook` and the baseline estimate."""

    def __init__(self, prices: PriceBook, estimates: Mapping[str, BaselineEstimateConfig] | None = None) -> None:
        self._prices = prices
        self._ratios: dict[str, tuple[Decimal, Decimal]] = {
            tier: (to_decimal(e.prompt_token_ratio), to_decimal(e.completion_token_ratio))
            for tier, e in (estimates or {}).items()
        }

    @classmethod
    def from_config(
        cls,
        config: AccountingConfig,
        tiers: Mapping[str, TierConfig],
        *,
        model_cost: ModelCostMap | Callable[[], ModelCostMap] | None = None,
    ) -> CostCalculator:
        """Build the price book (raising :class:`~gateway.errors.ConfigError` on gaps) and the calculator."""
        book = PriceBook.from_config(config, tiers, model_cost=model_cost)
        estimates = dict(config.baseline_estimate)
        for name, tier in tiers.items():
            # Callers may name the tier by its served model name; both get the same ratios.
            if name in config.baseline_estimate:
                estimates.setdefault(tier.served_model_name, config.baseline_estimate[name])
        return cls(book, estimates)

    @property
    def prices(self) -> PriceBook:
        """The price book in use."""
        return self._prices

    def _is_baseline(self, tier: str) -> bool:
        # Served names alias the same Price object, so identity covers them too.
        return self._prices.resolve(tier) is self._prices.baseline

    def cost(
        self,
        tier: str,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        cached_tokens: int = 0,
        wasted: Sequence[Attempt] = (),
    ) -> RequestCost:
        """Price a request answered by ``tier`` (a tier or served model name).

        ``prompt_tokens``/``completion_tokens`` are the usage reported to the client, of which
        ``cached_tokens`` prompt tokens the provider served from its prompt cache (billed at
        the tier's cached-input price, where it has one); ``wasted`` lists earlier attempts on
        other tiers that were paid for but discarded.
        """
        _check_tokens(prompt_tokens, completion_tokens)
        _check_tokens(cached_tokens, 0)
        with localcontext(prec=PRICE_PRECISION):
            prompt, completion, cached = Decimal(prompt_tokens), Decimal(completion_tokens), Decimal(cached_tokens)
            spent = _charge(self._prices.resolve(tier), prompt, completion, cached)
            for attempt in wasted:
                _check_tokens(attempt.prompt_tokens, attempt.completion_tokens)
                price = self._prices.resolve(attempt.tier)
                spent += _charge(price, Decimal(attempt.prompt_tokens), Decimal(attempt.completion_tokens))
            if self._is_baseline(tier):
                baseline = _charge(self._prices.baseline, prompt, completion, cached)
            else:
                # What the baseline model's cache would have held is unknown: its full input price.
                prompt_ratio, completion_ratio = self._ratios.get(tier, (Decimal(1), Decimal(1)))
                baseline = _charge(self._prices.baseline, prompt * prompt_ratio, completion * completion_ratio)
        return RequestCost(prompt_tokens, completion_tokens, usd_to_nanos(spent), usd_to_nanos(baseline))
