"""The admin API's logic: API keys, live routing, cost reports and captured conversations
(admin credential required)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gateway.accounting import Ledger
from gateway.errors import InvalidRequestError, NotFoundError, ServiceUnavailableError
from gateway.routing import RoutingPreference
from gateway.routing.live import RoutingControl, RoutingUpdate
from gateway.serving.chat import ChatCompletionService
from gateway.state import StateStore

__all__ = ["AdminService", "CreateKeyRequest", "parse_since"]

#: Conversations one export may return (the list itself holds up to ``state.capture.max_entries``).
MAX_CAPTURE_EXPORT = 100_000
_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(raw: str) -> timedelta:
    """``"90m"``, ``"1h"``, ``"7d"`` as a look-back period (400 otherwise)."""
    match = _SINCE.match(raw)
    if match is None:
        raise InvalidRequestError("since must look like 30m, 1h, 7d or 2w", param="since")
    try:
        period = timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    except OverflowError:  # beyond timedelta's range (e.g. "99999999999w"): too far back, not a 500
        period = timedelta.max
    if period > timedelta(days=800):
        raise InvalidRequestError("since reaches back further than the ledger keeps data", param="since")
    return period


class CreateKeyRequest(BaseModel):
    """Body of ``POST /admin/keys``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    tenant: str = Field("default", min_length=1, max_length=64)
    rpm_limit: int | None = Field(None, ge=1)
    tpm_limit: int | None = Field(None, ge=1)
    budget_usd: float | None = Field(None, ge=0, allow_inf_nan=False)
    #: The key's routing preference: ``{"threshold": t}`` or ``{"large_share": s}``.
    routing_defaults: RoutingPreference | None = None


class AdminService:
    """Key lifecycle and cost reports over the shared state."""

    def __init__(
        self, store: StateStore | None, ledger: Ledger | None, chat: ChatCompletionService | None = None
    ) -> None:
        self._store = store
        self._ledger = ledger
        self._chat = chat

    def _control(self) -> RoutingControl:
        control = self._chat.control if self._chat is not None else None
        if control is None:
            raise ServiceUnavailableError("live routing needs Redis")
        return control

    async def routing(self) -> dict[str, Any]:
        """Routing settings in force, effective thresholds, budget use and the recent large share."""
        control = self._control()
        policy = self._chat.policy if self._chat is not None else None
        base = policy.thresholds if policy is not None else None
        window = await control.window()
        budget = control.budget
        return {
            "settings": control.settings.model_dump(),
            "router": policy.router_name if policy is not None else None,
            "configured_thresholds": base,
            "effective_thresholds": control.thresholds(base),
            # Fixed thresholds set for another router are not applied (its scores differ).
            "thresholds_stale": control.thresholds_stale,
            "window": len(window),
            "realised_large_share": (sum(1 for e in window if e[1]) / len(window)) if window else None,
            "budget": None
            if budget is None
            else {"spent_usd": budget.spent_usd, "budget_usd": budget.budget_usd, "exhausted": budget.exhausted},
        }

    async def update_routing(self, change: RoutingUpdate, who: str) -> dict[str, Any]:
        """Change the live settings on every replica (audited)."""
        await self._control().update(change, who)
        return await self.routing()

    async def routing_audit(self, limit: int) -> dict[str, Any]:
        """Recent routing changes, newest first."""
        return {"object": "list", "data": await self._control().audit(max(1, min(limit, 1000)))}

    async def simulate(self, threshold: float) -> dict[str, Any]:
        """What a threshold would have done on the recent window."""
        return await self._control().simulate(threshold)

    def _require_store(self) -> StateStore:
        if self._store is None:
            raise ServiceUnavailableError("no Redis is configured for shared state")
        return self._store

    async def create_key(self, body: CreateKeyRequest) -> dict[str, Any]:
        """Create a key; the plaintext is in this response only."""
        try:
            plaintext, record = await self._require_store().api_keys.create(
                body.name,
                body.tenant,
                rpm_limit=body.rpm_limit,
                tpm_limit=body.tpm_limit,
                budget_usd=body.budget_usd,
                routing_defaults=body.routing_defaults.model_dump(exclude_none=True) if body.routing_defaults else None,
            )
        except ValueError as exc:
            # The store is the authority on what a key may hold (a tenant's characters, a
            # non-blank name); its messages start with the argument's name.
            message = str(exc)
            field = message.split(" ", 1)[0]
            param = field if field in CreateKeyRequest.model_fields else None
            raise InvalidRequestError(message, param=param) from None
        return {"key": plaintext, **record.model_dump(mode="json")}

    async def list_keys(self) -> dict[str, Any]:
        """Every key's record (never a secret or a hash)."""
        records = await self._require_store().api_keys.list()
        return {"object": "list", "data": [r.model_dump(mode="json") for r in records]}

    async def revoke_key(self, key_id: str) -> dict[str, Any]:
        """Revoke a key (404 when unknown)."""
        if not await self._require_store().api_keys.revoke(key_id):
            raise NotFoundError(f"no key with id {key_id!r}", param="key_id", code="key_not_found")
        return {"id": key_id, "revoked": True}

    async def captured(self, limit: int) -> dict[str, Any]:
        """The kept conversations, newest first, as ``slm-router label`` reads them."""
        capture = self._require_store().capture
        rows, kept = await capture.export(max(1, min(limit, MAX_CAPTURE_EXPORT)))
        return {"object": "list", "data": rows, "kept": kept, "sampling": capture.enabled}

    async def clear_captured(self) -> dict[str, Any]:
        """Drop every kept conversation (after export, or to stop keeping users' text)."""
        return {"deleted": await self._require_store().capture.clear()}

    async def costs(self, since: str) -> dict[str, Any]:
        """Requests, tokens, cost, baseline, savings and savings % by tier, model and key."""
        if self._ledger is None:
            raise ServiceUnavailableError("cost accounting is not enabled")
        summary = await self._ledger.summary(parse_since(since))
        return {"since": since, "rows": [row.as_dict() for row in summary.rows()], "table": summary.as_table()}
