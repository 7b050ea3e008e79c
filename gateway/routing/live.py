"""Live routing controls shared by every replica through Redis.

Operators change the threshold, a target large-model share or an hourly budget with
``PUT /admin/routing`` (or ``slm-router threshold ...``). The change is written to a
Redis hash, audited (who, when, old, new) in a capped list, and a version counter is
bumped; every replica polls that counter four times a second, so a change reaches all
of them within a second, and the hash outlives restarts. Scored traffic goes into a
shared sliding window that drives the target-share controller and the simulator.
When Redis is down, replicas keep their last known settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.accounting import CostCalculator, Ledger
from gateway.errors import InvalidRequestError
from gateway.routing.controller import BudgetState, budget_threshold, target_threshold

__all__ = ["LiveRouting", "RoutingControl", "RoutingUpdate"]

logger = logging.getLogger(__name__)

_POLL_S = 0.25
_RECOMPUTE_S = 1.0
#: A router's window outlives its last routed request by this long.
_ROUTER_WINDOW_TTL_S = 30 * 24 * 3600


class LiveRouting(BaseModel):
    """The operator's routing settings in force."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: ``threshold``: fixed thresholds; ``target``: keep ``target_share`` of traffic on the large tier.
    mode: Literal["threshold", "target"] = "threshold"
    #: Fixed boundaries (``None``: the config's or the artifact's calibrated ones).
    thresholds: list[float] | None = None
    #: The router (``name@digest``) the fixed boundaries were set for. A score is only
    #: comparable with thresholds for the router that gave it: once another artifact is
    #: loaded, the boundaries are set aside (``None``: set before routers were recorded).
    router: str | None = None
    target_share: float | None = Field(None, ge=0.0, le=1.0)
    #: Cap on large-tier spend per hour in USD (``None``: no cap).
    budget_usd_per_hour: float | None = Field(None, ge=0.0)
    #: At the cap: serve from the small tier (flagged ``budget``) or answer 429.
    over_budget: Literal["small", "reject"] = "small"
    version: int = 0
    updated_by: str | None = None
    updated_at: float | None = None


class RoutingUpdate(BaseModel):
    """Body of ``PUT /admin/routing``: the fields to change."""

    model_config = ConfigDict(extra="forbid")

    threshold: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False)
    thresholds: list[float] | None = None
    target_share: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False)
    budget_usd_per_hour: float | None = Field(None, ge=0.0, allow_inf_nan=False)
    over_budget: Literal["small", "reject"] | None = None
    #: ``threshold`` mode drops a target; ``clear_budget`` removes the cap.
    mode: Literal["threshold", "target"] | None = None
    clear_budget: bool = False
    #: Back to the configured (or the artifact's calibrated) thresholds: drops fixed
    #: thresholds and a target; the budget stays unless ``clear_budget`` says otherwise.
    reset: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> RoutingUpdate:
        bad = self.thresholds is not None and (
            any(not 0.0 <= t <= 1.0 for t in self.thresholds) or self.thresholds != sorted(self.thresholds)
        )
        if bad:
            raise ValueError("thresholds must be ascending values within [0, 1]")
        if self.threshold is not None and self.thresholds is not None:
            raise ValueError("give threshold or thresholds, not both")
        if self.reset and (self.threshold, self.thresholds, self.target_share, self.mode) != (None,) * 4:
            raise ValueError("reset takes no threshold, thresholds, target_share or mode")
        return self


class RoutingControl:
    """One replica's view of the shared routing settings, score window and budget."""

    def __init__(
        self,
        client: Any,
        *,
        prefix: str,
        tiers: Sequence[str],
        calculator: CostCalculator | None = None,
        ledger: Ledger | None = None,
        window: int = 2000,
    ) -> None:
        self._client = client
        self._tiers = list(tiers)
        self._large = self._tiers[-1]
        self._calculator = calculator
        self._ledger = ledger
        self._window = window
        tag = f"{prefix}:{{routing}}"
        self._settings_key = f"{tag}:settings"
        self._version_key = f"{tag}:version"
        self._audit_key = f"{tag}:audit"
        self._window_key = f"{tag}:window"
        self.settings = LiveRouting()
        self._target_thresholds: list[float] | None = None
        self._budget: BudgetState | None = None
        self._pending: deque[tuple[str | None, str]] = deque(maxlen=window)
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._version_seen = -1
        #: The router this replica scores with (``name@digest``; ``None``: no learned router).
        self.router: str | None = None

    def use_router(self, router: str | None) -> None:
        """Score with ``router`` from now on: fixed thresholds and the window are per router."""
        if router != self.router:
            # A target's thresholds came from the old router's scores; until the new one has
            # scored enough traffic, its own configured thresholds route.
            self._target_thresholds = None
        self.router = router

    # --- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Load the settings (a restart keeps them) and start the background loop."""
        await self._reload()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        """Stop the loop after flushing observed scores."""
        self._stopping.set()
        if self._task is not None:
            # Ask, don't cancel: redis-py can swallow a cancellation mid-command, which
            # would leave a cancelled loop running forever.
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=2.0)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
        with contextlib.suppress(Exception):
            await self._flush_window()

    async def _loop(self) -> None:
        next_recompute = 0.0
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=_POLL_S)
            if self._stopping.is_set():
                return
            try:
                version = int(await self._client.get(self._version_key) or 0)
                if version != self._version_seen:
                    await self._reload()
                await self._flush_window()
                now = time.monotonic()
                if now >= next_recompute:
                    next_recompute = now + _RECOMPUTE_S
                    await self._recompute()
            except Exception as exc:  # noqa: BLE001 - Redis down: keep the last known settings
                logger.debug("routing control refresh failed: %s", type(exc).__name__)

    async def _reload(self) -> None:
        try:
            raw = await self._client.get(self._settings_key)
            version = int(await self._client.get(self._version_key) or 0)
        except Exception as exc:  # noqa: BLE001
            logger.warning("routing settings unavailable (%s); keeping the last known", type(exc).__name__)
            return
        if raw:
            try:
                self.settings = LiveRouting.model_validate_json(raw)
            except ValidationError:
                logger.error("ignoring corrupt routing settings in redis")
        self._version_seen = version
        await self._recompute()

    # --- effective thresholds -----------------------------------------------------------

    def thresholds(self, base: Sequence[float] | None, *, with_budget: bool = True) -> list[float] | None:
        """The boundaries to route with now: fixed or target-driven, then tightened by the budget."""
        chosen: list[float] | None = list(base) if base else None
        if self.settings.mode == "target" and self._target_thresholds is not None:
            chosen = list(self._target_thresholds)
        elif self.settings.thresholds and not self.thresholds_stale:
            chosen = list(self.settings.thresholds)
        if chosen is None:
            return None
        if self._budget is not None and with_budget:
            chosen = [min(t, budget_threshold(chosen[-1], self._budget)) for t in chosen[:-1]] + [
                budget_threshold(chosen[-1], self._budget)
            ]
        return chosen

    @property
    def thresholds_stale(self) -> bool:
        """Whether the fixed thresholds were set for another router than the one loaded here."""
        set_for = self.settings.router
        return set_for is not None and set_for != self.router

    @property
    def budget(self) -> BudgetState | None:
        """Large-tier spend this hour against the cap (``None`` without a cap)."""
        return self._budget

    # --- observations ----------------------------------------------------------------

    def observe(self, score: float, tier: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Record one routed request (flushed to the shared window in the background)."""
        entry = f"{score:.6f}|{int(tier == self._large)}|{prompt_tokens}|{completion_tokens}"
        self._pending.append((self.router, entry))

    def _router_window_key(self, router: str | None) -> str:
        # One window per router: scores of different artifacts are on different scales.
        return self._window_key if router is None else f"{self._window_key}:{router}"

    async def _flush_window(self) -> None:
        if not self._pending:
            return
        by_router: dict[str | None, list[str]] = {}
        for router, entry in self._pending:
            by_router.setdefault(router, []).append(entry)
        self._pending.clear()
        pipe = self._client.pipeline(transaction=False)
        for router, entries in by_router.items():
            key = self._router_window_key(router)
            pipe.lpush(key, *entries)
            pipe.ltrim(key, 0, self._window - 1)
            if router is not None:
                pipe.expire(key, _ROUTER_WINDOW_TTL_S)  # an artifact no longer loaded leaves nothing behind
        await pipe.execute()

    async def window(self) -> list[tuple[float, bool, int, int]]:
        """The shared window of recent routed requests: (score, went large, prompt, completion).

        Only requests scored by this replica's router count (while a new artifact rolls out,
        replicas score on different scales): each router has a window of its own.
        """
        raw = await self._client.lrange(self._router_window_key(self.router), 0, self._window - 1)
        entries = []
        for item in raw:
            score, large, prompt, completion = (item.decode() if isinstance(item, bytes) else item).split("|")
            entries.append((float(score), large == "1", int(prompt), int(completion)))
        return entries

    async def _recompute(self) -> None:
        settings = self.settings
        if settings.mode == "target" and settings.target_share is not None:
            entries = await self.window()
            top = target_threshold([e[0] for e in entries], [e[1] for e in entries], settings.target_share)
            if top is not None:
                self._target_thresholds = [top] * (len(self._tiers) - 1)
        else:
            self._target_thresholds = None
        if settings.budget_usd_per_hour is not None and self._ledger is not None:
            now = datetime.now(UTC)
            summary = await self._ledger.summary(now.replace(minute=0, second=0, microsecond=0))
            spent = sum(row.counts.cost_nanos for row in summary.by_tier if row.name == self._large) / 1e9
            left = 3600 - (now.minute * 60 + now.second)
            self._budget = BudgetState(spent, settings.budget_usd_per_hour, left)
        else:
            self._budget = None

    # --- operator API -------------------------------------------------------------------

    async def update(self, change: RoutingUpdate, who: str) -> LiveRouting:
        """Apply an operator's change everywhere: store, audit, bump the version."""
        old = self.settings
        data = old.model_dump()
        if change.reset:
            data.update(mode="threshold", thresholds=None, target_share=None, router=None)
        if change.threshold is not None:
            data.update(thresholds=[change.threshold] * (len(self._tiers) - 1), mode="threshold", router=self.router)
        if change.thresholds is not None:
            if len(change.thresholds) != len(self._tiers) - 1:
                raise InvalidRequestError(
                    f"{len(self._tiers)} tiers need {len(self._tiers) - 1} thresholds", param="thresholds"
                )
            data.update(thresholds=change.thresholds, mode="threshold", router=self.router)
        if change.target_share is not None:
            data["target_share"], data["mode"] = change.target_share, "target"
        if change.mode is not None:
            if change.mode == "target" and data.get("target_share") is None:
                raise InvalidRequestError("target mode needs target_share", param="mode")
            data["mode"] = change.mode
        if change.budget_usd_per_hour is not None:
            data["budget_usd_per_hour"] = change.budget_usd_per_hour
        if change.clear_budget:
            data["budget_usd_per_hour"] = None
        if change.over_budget is not None:
            data["over_budget"] = change.over_budget
        data.update(version=old.version + 1, updated_by=who, updated_at=time.time())
        new = LiveRouting.model_validate(data)
        entry = {
            "who": who,
            "at": datetime.now(UTC).isoformat(),
            "old": old.model_dump(exclude={"version", "updated_by", "updated_at"}),
            "new": new.model_dump(exclude={"version", "updated_by", "updated_at"}),
        }
        pipe = self._client.pipeline(transaction=True)
        pipe.set(self._settings_key, new.model_dump_json())
        pipe.lpush(self._audit_key, json.dumps(entry))
        pipe.ltrim(self._audit_key, 0, 999)
        pipe.incr(self._version_key)
        await pipe.execute()
        await self._reload()
        return self.settings

    async def audit(self, limit: int = 50) -> list[dict[str, Any]]:
        """The most recent changes, newest first."""
        raw = await self._client.lrange(self._audit_key, 0, limit - 1)
        return [json.loads(item) for item in raw]

    async def simulate(self, threshold: float) -> dict[str, Any]:
        """What ``threshold`` would have done on the recent window: large share and cost."""
        if not 0.0 <= threshold <= 1.0:
            raise InvalidRequestError("threshold must be within [0, 1]", param="threshold")
        entries = await self.window()
        if not entries:
            return {"threshold": threshold, "window": 0, "large_share": None, "cost_usd": None}
        large = sum(1 for score, *_ in entries if score >= threshold)
        result: dict[str, Any] = {
            "threshold": threshold,
            "window": len(entries),
            "large_share": large / len(entries),
            "actual_large_share": sum(1 for e in entries if e[1]) / len(entries),
        }
        if self._calculator is not None:
            simulated = actual = 0
            for score, went_large, prompt, completion in entries:
                tier = self._large if score >= threshold else self._tiers[0]
                simulated += self._calculator.cost(tier, prompt, completion).cost_nanos
                actual_tier = self._large if went_large else self._tiers[0]
                actual += self._calculator.cost(actual_tier, prompt, completion).cost_nanos
            result.update(cost_usd=simulated / 1e9, actual_cost_usd=actual / 1e9)
        return result
