"""Liveness and readiness: named async checks with a timeout each.

Hard checks (the model tiers) decide readiness. Soft checks (Redis) only mark the
replica ``degraded``: serving goes on without shared state, as designed, and a load
balancer must not pull every replica because Redis blinked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HealthCheck", "HealthReport", "HealthService"]

HealthCheck = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class HealthReport:
    """Readiness result: ``ready`` when every hard check passed."""

    ready: bool
    checks: dict[str, str]
    degraded: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """JSON body of the readiness endpoint."""
        status = "not_ready" if not self.ready else ("degraded" if self.degraded else "ready")
        return {"status": status, "checks": self.checks, **self.info}


class HealthService:
    """Runs readiness checks concurrently; a check that raises or times out fails."""

    def __init__(
        self,
        checks: Mapping[str, HealthCheck],
        timeout_s: float = 2.0,
        info: Callable[[], dict[str, Any]] | None = None,
        soft_checks: Mapping[str, HealthCheck] | None = None,
    ) -> None:
        self._checks = dict(checks)
        self._soft = dict(soft_checks or {})
        self._timeout_s = timeout_s
        self._info = info

    async def _run(self, check: HealthCheck) -> str:
        try:
            async with asyncio.timeout(self._timeout_s):
                await check()
        except TimeoutError:
            return f"timeout after {self._timeout_s:g}s"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return f"failed: {type(exc).__name__}: {exc}"[:300]
        return "ok"

    async def readiness(self) -> HealthReport:
        """Run every check."""
        names = [*self._checks, *self._soft]
        every = {**self._checks, **self._soft}
        results = await asyncio.gather(*(self._run(every[n]) for n in names))
        checks = dict(zip(names, results, strict=True))
        ready = all(checks[n] == "ok" for n in self._checks)
        degraded = any(checks[n] != "ok" for n in self._soft)
        info = self._info() if self._info is not None else {}
        return HealthReport(ready=ready, checks=checks, degraded=degraded, info=info)
