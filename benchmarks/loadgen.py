"""A closed-loop HTTP load generator (aiohttp) that is not the bottleneck it measures.

``concurrency`` workers each send a request, wait for the whole answer and send the next,
for ``duration_s`` after ``warmup_s`` seconds whose requests are not counted. httpx tops
out near 400 req/s here; aiohttp on uvloop does several thousand.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

__all__ = ["LoadResult", "run_load"]


@dataclass
class LoadResult:
    """What one load level measured."""

    concurrency: int
    seconds: float
    latencies_s: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> int:
        """Successful requests in the measured window."""
        return len(self.latencies_s)

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        """Latency percentile in milliseconds (NaN without data)."""
        return float(np.percentile(self.latencies_s, q) * 1000) if self.latencies_s else float("nan")

    def summary(self) -> dict[str, Any]:
        """JSON-friendly figures."""
        return {
            "concurrency": self.concurrency,
            "requests": self.ok,
            "errors": dict(self.errors),
            "throughput_rps": round(self.throughput, 1),
            "p50_ms": round(self.percentile_ms(50), 2),
            "p99_ms": round(self.percentile_ms(99), 2),
        }


async def run_load(
    url: str,
    body: dict[str, Any],
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float = 2.0,
    headers: dict[str, str] | None = None,
    timeout_s: float = 30.0,
) -> LoadResult:
    """Drive ``url`` with ``concurrency`` closed-loop workers; count only the measured window."""
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    started = time.perf_counter()
    measure_from = started + warmup_s
    stop_at = measure_from + duration_s
    result = LoadResult(concurrency, duration_s)

    async def worker(session: aiohttp.ClientSession) -> None:
        while (now := time.perf_counter()) < stop_at:
            error: str | None = None
            try:
                async with session.post(url, json=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, error = -1, type(exc).__name__
            end = time.perf_counter()
            if now < measure_from or end > stop_at:
                continue
            if status == 200:
                result.latencies_s.append(end - now)
            else:
                key = error or f"http {status}"
                result.errors[key] = result.errors.get(key, 0) + 1

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return result
