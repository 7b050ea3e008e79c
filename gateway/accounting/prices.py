"""Token prices: litellm's bundled map for hosted models, config for everything else.

:meth:`PriceBook.from_config` runs once at start-up. It prices every tier, and the
baseline, or raises one :class:`~gateway.errors.ConfigError` that lists every tier it
could not price, so a typo never turns into "savings: $0" in production.

Prices are :class:`~decimal.Decimal` USD per token, so that a price such as
$0.15 per million tokens (1.5e-7 per token) is exact rather than a binary float.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, localcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.accounting.config import (
    AccountingConfig,
    GpuHourPriceConfig,
    LiteLLMPriceConfig,
    PerMillionPriceConfig,
    PriceConfig,
    to_decimal,
)
from gateway.errors import ConfigError

if TYPE_CHECKING:
    # gateway.config imports gateway.accounting.config, so importing it here at module
    # level would be circular; the tier classes are imported where they are used.
    from gateway.config import TierConfig

__all__ = ["LITELLM_PRICE_FILE", "Price", "PriceBook", "UnknownPriceError", "load_litellm_model_cost"]

#: The price map litellm ships and loads itself when ``LITELLM_LOCAL_MODEL_COST_MAP=True``.
LITELLM_PRICE_FILE = "model_prices_and_context_window_backup.json"

#: Significant digits for price arithmetic: far beyond any price or token count, so the
#: only rounding that matters is the final one to nano-dollars.
PRICE_PRECISION = 50

_MILLION = Decimal(1_000_000)
_SECONDS_PER_HOUR = Decimal(3600)

ModelCostMap = Mapping[str, Mapping[str, Any]]

logger = logging.getLogger(__name__)


class UnknownPriceError(KeyError):
    """A name the price book does not know (a bug: every tier is priced at start-up)."""


@dataclass(frozen=True, slots=True)
class Price:
    """USD per token for prompt (input) and completion (output) tokens."""

    input_per_token: Decimal
    output_per_token: Decimal
    #: Where the price came from, for logs and ``/v1/models``-style introspection.
    source: str = ""
    #: Prompt tokens served from the provider's prompt cache; ``None``: the input price.
    cached_input_per_token: Decimal | None = None

    @classmethod
    def per_million(
        cls,
        input_usd: float | Decimal,
        output_usd: float | Decimal,
        source: str = "",
        cached_input_usd: float | Decimal | None = None,
    ) -> Price:
        """A price quoted in USD per million tokens."""
        with localcontext(prec=PRICE_PRECISION):
            cached = None if cached_input_usd is None else to_decimal(cached_input_usd) / _MILLION
            return cls(to_decimal(input_usd) / _MILLION, to_decimal(output_usd) / _MILLION, source, cached)

    @classmethod
    def from_gpu_hour(cls, config: GpuHourPriceConfig, source: str = "") -> Price:
        """A self-hosted price: GPU cost per hour amortised over the tokens served in it."""
        with localcontext(prec=PRICE_PRECISION):
            hourly = to_decimal(config.gpu_hour_usd) * to_decimal(config.gpus)
            tokens_per_hour = _SECONDS_PER_HOUR * to_decimal(config.tokens_per_second) * to_decimal(config.utilization)
            per_token = hourly / tokens_per_hour
        return cls(per_token, per_token, source)

    def usd_per_million(self) -> tuple[Decimal, Decimal]:
        """(input, output) in USD per million tokens, for humans."""
        with localcontext(prec=PRICE_PRECISION):
            return (self.input_per_token * _MILLION).normalize(), (self.output_per_token * _MILLION).normalize()


def load_litellm_model_cost() -> ModelCostMap:
    """litellm's price map, read locally and never over the network.

    If litellm is already imported, its live ``litellm.model_cost`` is used (it includes
    any ``litellm.register_model`` additions). Otherwise the JSON file litellm bundles
    is read directly: it is exactly what litellm loads with
    ``LITELLM_LOCAL_MODEL_COST_MAP=True``, without litellm's multi-second import.
    """
    module = sys.modules.get("litellm")
    if module is not None:
        return dict(module.model_cost)
    spec = importlib.util.find_spec("litellm")
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / LITELLM_PRICE_FILE
        if path.is_file():
            loaded: dict[str, Mapping[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
            return loaded
    # An unusual layout: let litellm find its own file, offline.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    return dict(litellm.model_cost)


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return to_decimal(value)
    except ArithmeticError:
        return None


def litellm_price(model_cost: ModelCostMap, model: str) -> Price | None:
    """The price of ``model`` in litellm's map (``openai/gpt-4o`` falls back to ``gpt-4o``)."""
    candidates = [model]
    if "/" in model:
        candidates.append(model.split("/", 1)[1])
    for name in candidates:
        entry = model_cost.get(name)
        if not isinstance(entry, Mapping):
            continue
        input_cost = _number(entry.get("input_cost_per_token"))
        output_cost = _number(entry.get("output_cost_per_token"))
        if input_cost is not None and output_cost is not None:
            cached = _number(entry.get("cache_read_input_token_cost"))
            return Price(input_cost, output_cost, f"litellm:{name}", cached)
    return None


class PriceBook:
    """Resolves a tier name, served model name or priced model name to a :class:`Price`."""

    def __init__(self, prices: Mapping[str, Price], *, baseline: str) -> None:
        if baseline not in prices:
            raise ConfigError(f"accounting: the baseline {baseline!r} has no price")
        self._prices = dict(prices)
        self._baseline = baseline
        #: Config problems that did not stop start-up (e.g. unused ``prices`` keys).
        self.warnings: list[str] = []

    @property
    def baseline_name(self) -> str:
        """The name the baseline was configured under."""
        return self._baseline

    @property
    def baseline(self) -> Price:
        """What the baseline (large) model charges."""
        return self._prices[self._baseline]

    def resolve(self, name: str) -> Price:
        """The price of a tier or model; :class:`UnknownPriceError` if it was never configured."""
        try:
            return self._prices[name]
        except KeyError:
            raise UnknownPriceError(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._prices

    def names(self) -> list[str]:
        """Every name the book resolves."""
        return sorted(self._prices)

    @classmethod
    def from_config(
        cls,
        config: AccountingConfig,
        tiers: Mapping[str, TierConfig],
        *,
        model_cost: ModelCostMap | Callable[[], ModelCostMap] | None = None,
    ) -> PriceBook:
        """Price every tier and the baseline, or raise :class:`ConfigError` listing every gap.

        ``model_cost`` replaces litellm's map (a mapping, or a loader called only when
        some price needs it); by default :func:`load_litellm_model_cost` is used.
        """
        resolver = _Resolver(config, model_cost)
        prices: dict[str, Price] = {}
        referenced: set[str] = set()
        for name, tier in tiers.items():
            price = resolver.tier_price(name, tier)
            referenced.update({name, tier.served_model_name, tier.model})
            if price is not None:
                prices[name] = price
                prices.setdefault(tier.served_model_name, price)
        if not tiers:
            resolver.errors.append("accounting: there are no tiers to price")
        baseline = config.baseline if config.baseline is not None else (list(tiers)[-1] if tiers else "")
        referenced.add(baseline)
        tier_names = set(tiers) | {t.served_model_name for t in tiers.values()}
        # A baseline tier that could not be priced is already reported above.
        same_model = [n for n, t in tiers.items() if t.model == baseline and n in prices]
        if baseline and baseline not in prices and same_model:
            # The baseline names a tier's model: share that tier's price, so requests
            # served by the tier are recognised as served by the baseline itself.
            prices[baseline] = prices[same_model[0]]
        elif baseline and baseline not in prices and baseline not in tier_names:
            price = resolver.model_price(baseline, f"the baseline {baseline!r}")
            if price is not None:
                prices[baseline] = price
        # Unused keys are warnings, not errors: SLM_ROUTER_LARGE_MODEL swaps the large
        # tier's model, which must not break a config that prices the stand-in by name.
        unused = [
            f"accounting.prices.{key}: matches no tier, served model, tier model or the baseline; ignored"
            for key in sorted(set(config.prices) - referenced)
        ]
        for key in sorted(set(config.baseline_estimate) - set(tiers)):
            resolver.errors.append(f"accounting.baseline_estimate.{key}: is not a tier")
        if resolver.errors:
            raise ConfigError("accounting: cannot price every model\n  " + "\n  ".join(resolver.errors + unused))
        for warning in unused:
            logger.warning("%s", warning)
        book = cls(prices, baseline=baseline)
        book.warnings = unused
        return book


class _Resolver:
    """Start-up price resolution that collects every problem instead of stopping at the first."""

    def __init__(self, config: AccountingConfig, model_cost: ModelCostMap | Callable[[], ModelCostMap] | None) -> None:
        self._config = config
        self._model_cost_source = model_cost
        self._model_cost: ModelCostMap | None = None
        self.errors: list[str] = []

    def _litellm_map(self) -> ModelCostMap:
        # Loaded lazily: a config that prices everything explicitly never reads the map.
        if self._model_cost is None:
            source = self._model_cost_source
            if source is None:
                self._model_cost = load_litellm_model_cost()
            elif callable(source):
                self._model_cost = source()
            else:
                self._model_cost = source
        return self._model_cost

    def _configured(self, entry: PriceConfig, where: str) -> Price | None:
        if isinstance(entry, PerMillionPriceConfig):
            return Price.per_million(
                entry.input_usd_per_million, entry.output_usd_per_million, where, entry.cached_input_usd_per_million
            )
        if isinstance(entry, GpuHourPriceConfig):
            return Price.from_gpu_hour(entry, where)
        assert isinstance(entry, LiteLLMPriceConfig)
        price = litellm_price(self._litellm_map(), entry.model)
        if price is None:
            self.errors.append(f"{where}: litellm's price map has no model {entry.model!r}")
        return price

    def tier_price(self, name: str, tier: TierConfig) -> Price | None:
        """The price of one tier: config override first, then litellm's map."""
        from gateway.config import LiteLLMTierConfig, VLLMTierConfig

        for key in (name, tier.served_model_name, tier.model):
            entry = self._config.prices.get(key)
            if entry is not None:
                return self._configured(entry, f"accounting.prices.{key}")
        if isinstance(tier, VLLMTierConfig):
            self.errors.append(
                f"tier {name!r} is self-hosted and has no price: set accounting.prices.{name} "
                "(kind: gpu_hour with gpu_hour_usd and tokens_per_second, or kind: per_million)"
            )
            return None
        assert isinstance(tier, LiteLLMTierConfig)
        if tier.uses_local_stand_in:
            self.errors.append(
                f"tier {name!r} is the local stand-in ({tier.model!r}), which litellm cannot price: "
                f"set accounting.prices.{name} (for example kind: litellm, model: gpt-4o)"
            )
            return None
        price = litellm_price(self._litellm_map(), tier.model)
        if price is None:
            self.errors.append(
                f"tier {name!r}: hosted model {tier.model!r} is not in litellm's price map: "
                f"set accounting.prices.{name} (kind: per_million or kind: litellm)"
            )
        return price

    def model_price(self, model: str, what: str) -> Price | None:
        """The price of a model that is not a tier (e.g. the baseline)."""
        entry = self._config.prices.get(model)
        if entry is not None:
            return self._configured(entry, f"accounting.prices.{model}")
        price = litellm_price(self._litellm_map(), model)
        if price is None:
            self.errors.append(
                f"{what} is neither a tier nor a model in litellm's price map: "
                f"set accounting.baseline to a tier, or add accounting.prices.{model}"
            )
        return price
