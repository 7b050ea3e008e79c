"""Liveness and readiness: named async checks with a timeout each."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HealthCheck", "HealthReport", "HealthService"]

HealthCheck = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class HealthReport:
    """Readiness result: ``ready`` only when every check passed."""

    ready: bool
    checks: dict[str, str]
    info: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """JSON body of the readiness endpoint."""
        return {"status": "ready" if self.ready else "not_ready", "checks": self.checks, **self.info}


class HealthService:
    """Runs readiness checks concurrently; a check that raises or times out fails."""

    def __init__(
        self,
        checks: Mapping[str, HealthCheck],
        timeout_s: float = 2.0,
        info: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self._checks = dict(checks)
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
        names = list(self._checks)
        results = await asyncio.gather(*(self._run(self._checks[n]) for n in names))
        checks = dict(zip(names, results, strict=True))
        info = self._info() if self._info is not None else {}
        return HealthReport(ready=all(r == "ok" for r in results), checks=checks, info=info)
