"""A caller's routing preference: a fixed threshold, or the share of requests for the large model.

A threshold is a number on one router's score scale: after a new artifact loads it may send a
very different share of requests to the large model. A share is the same request whichever
router is loaded: each artifact turns it into its own threshold through its calibration table
(the share of its reference prompts that reach the large model). API keys carry one in
``routing_defaults``, tenants in ``routing.tenant_thresholds`` / ``routing.tenant_large_shares``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.routing.policy import ThresholdPolicy

__all__ = ["RoutingPreference"]


class RoutingPreference(BaseModel):
    """``threshold`` or ``large_share`` (not both); neither leaves routing to the policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Score at or above which the request goes to the largest tier (this router's scale).
    threshold: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False)
    #: Share of the loaded router's reference prompts that its threshold for this sends to the
    #: largest tier (0.3: the threshold that sent 30% of them there).
    large_share: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_of(self) -> RoutingPreference:
        if self.threshold is not None and self.large_share is not None:
            raise ValueError("set threshold or large_share, not both")
        return self

    @classmethod
    def by_tenant(
        cls, thresholds: Mapping[str, float], large_shares: Mapping[str, float]
    ) -> dict[str, RoutingPreference]:
        """Each tenant's preference from ``routing.tenant_thresholds`` and ``tenant_large_shares``."""
        preferences = {tenant: cls(threshold=value) for tenant, value in thresholds.items()}
        preferences.update((tenant, cls(large_share=value)) for tenant, value in large_shares.items())
        return preferences

    @classmethod
    def stored(cls, value: Mapping[str, Any]) -> RoutingPreference:
        """A key's stored ``routing_defaults``. One written before they were checked at creation
        (another field, a value out of range) counts as no preference, as it always did; it is
        read on every request of the key, so it is not logged."""
        try:
            return cls.model_validate(value)
        except ValidationError:
            return cls()

    def threshold_with(self, policy: ThresholdPolicy | None) -> float | None:
        """The threshold this asks of ``policy``'s router: ``None`` for no preference, or for a
        share when no router with a calibration table is loaded."""
        if self.threshold is not None:
            return self.threshold
        if self.large_share is not None and policy is not None:
            return policy.threshold_for_share(self.large_share)
        return None
