"""Fault: Redis is SIGKILLed under load and started again on the same port and data folder.

While Redis is down the gateway keeps serving (no auth in the local profile, rate limits
fail open, the cache misses) and its ``BufferedWriter`` holds the ledger increments; when
Redis is back (it replays its append-only file), the buffer is flushed. Goals:

* no request fails because Redis is down;
* afterwards the ledger equals the sum of the costs clients were told: 0 lost entries,
  to the nano-dollar (entries acknowledged before the kill survive in the AOF, the rest
  were buffered);
* ``/health/ready`` says not ready while Redis is down, and ready again after the restart.

    flock /tmp/slm-ray.lock .venv/bin/python -m loadtest.faults.redis_restart --down 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections import Counter

import aiohttp

from loadtest.faults.ledger import compare, read_ledger, settle
from loadtest.faults.load import Lane, LoadGenerator, only, warm_up
from loadtest.faults.report import FaultReport, format_counts, ledger_rows, outcome_rows
from loadtest.faults.runner import main
from loadtest.faults.target import FaultTarget, large_tier, served_name, small_tier

__all__ = ["redis_restart", "run"]

NAME = "redis_restart"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This fault's options."""
    parser.add_argument("--down", "--duration", dest="down", type=float, default=10.0, help="seconds Redis stays down")
    parser.add_argument("--concurrency", type=int, default=3, help="closed-loop clients sending routed requests")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before the kill")
    parser.add_argument("--after", type=float, default=10.0, help="seconds of load after the restart")


async def run(target: FaultTarget, args: argparse.Namespace) -> FaultReport:
    """The fault with the command line's options."""
    return await redis_restart(
        target, down_s=args.down, concurrency=args.concurrency, warmup_s=args.warmup, after_s=args.after
    )


async def _watch_readiness(base_url: str, stop: asyncio.Event, samples: list[tuple[float, str]]) -> None:
    # One GET a second is enough to see readiness change; it goes through the same proxy.
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            try:
                async with session.get(f"{base_url}/health/ready", timeout=aiohttp.ClientTimeout(total=5)) as r:
                    body = await r.json(content_type=None)
                    state = f"{r.status} {body.get('status')}"
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                state = type(exc).__name__
            samples.append((time.monotonic(), state))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


async def redis_restart(
    target: FaultTarget, *, down_s: float = 10.0, concurrency: int = 3, warmup_s: float = 5.0, after_s: float = 10.0
) -> FaultReport:
    """Run the fault on a running gateway (Redis runs again afterwards)."""
    config = target.config
    small_model = served_name(config, small_tier(config))
    large_model = served_name(config, large_tier(config))
    report = FaultReport(
        NAME,
        f"redis-server is SIGKILLed after {warmup_s:g} s of load ({concurrency} clients send routed requests, 1 names "
        f"the small model, 1 the large one; half streams) and started again {down_s:g} s later on the same port and "
        "data folder (AOF on).",
        f"flock /tmp/slm-ray.lock .venv/bin/python -m loadtest.faults.{NAME} --down {down_s:g}",
    )
    await warm_up(target.base_url, small_model, large_model)
    prefix = config.accounting.ledger.key_prefix
    before = await asyncio.to_thread(read_ledger, target.redis.url, prefix)
    lanes = [Lane(concurrency, only("router")), Lane(1, only(small_model)), Lane(1, only(large_model))]
    generator = LoadGenerator(target.base_url, lanes=lanes, seed=3)
    began = time.monotonic()
    stop_watch = asyncio.Event()
    readiness: list[tuple[float, str]] = []
    watcher = asyncio.create_task(_watch_readiness(target.base_url, stop_watch, readiness))
    load = asyncio.create_task(generator.run(warmup_s + down_s + after_s))
    try:
        await asyncio.sleep(warmup_s)
        killed_at = time.monotonic()
        pid = await asyncio.to_thread(target.redis.kill)
        await asyncio.sleep(down_s)
    finally:
        restarted_at = time.monotonic()
        if target.redis.pid() is None:
            await asyncio.to_thread(target.redis.restart)
    outcomes = await load
    ledger, waited = await asyncio.to_thread(settle, target.redis.url, prefix, before, sum(o.ok for o in outcomes))
    stop_watch.set()
    await watcher
    check = compare(outcomes, ledger, waited)
    report.seconds = time.monotonic() - began
    report.outcomes = outcomes

    while_down = [o for o in outcomes if o.started >= killed_at and o.ended <= restarted_at]
    report.add("redis-server pid killed (SIGKILL)", pid)
    report.rows += outcome_rows(outcomes, "all phases: ")
    report.rows += outcome_rows(while_down, "wholly while Redis was down: ")
    down_ready = Counter(s for t, s in readiness if killed_at + 1.5 <= t < restarted_at)
    report.add("/health/ready while Redis was down", format_counts(down_ready))
    back = [t for t, s in readiness if t >= restarted_at and s == "200 ready"]
    ready_after = back[0] - restarted_at if back else None
    ready_text = f"{ready_after:.1f} s" if ready_after is not None else "never"
    report.add("/health/ready back to 200 ready (not degraded) after the restart", ready_text)
    report.rows += ledger_rows(check)

    failed = [o for o in outcomes if not o.ok]
    report.check(
        "no request fails while Redis is down or restarting",
        not failed,
        format_counts(Counter(o.label for o in failed)),
    )
    report.check(
        "requests completed while Redis was down",
        len([o for o in while_down if o.ok]) > 0,
        f"{sum(o.ok for o in while_down)} answered with Redis down",
    )
    report.check(
        "ledger equals the sum of client costs after the restart (0 lost)",
        check.exact,
        f"lost {check.lost}, extra {check.extra}, cost diff {check.cost_diff_nanos} nano-USD",
    )
    report.check(
        "readiness says degraded (still 200: Redis is a soft check) while Redis is down, ready after",
        set(down_ready) == {"200 degraded"} and ready_after is not None,
        f"while down: {format_counts(down_ready)}; ready again after {ready_text}",
    )
    report.notes.append(
        "gateway/serving/health.py treats Redis as a soft check: /health/ready stays 200 with status degraded "
        "while Redis is down, so a load balancer keeps every replica in while Redis blinks."
    )
    return report


if __name__ == "__main__":
    sys.exit(main(NAME, run, add_arguments, description=__doc__ or NAME))
