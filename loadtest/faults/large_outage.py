"""Fault: the large tier's upstream answers 500 to every call for a while.

Load (routed ``model="router"`` requests, about 40% of which the router sends to the large
tier, plus requests naming the small and the large model; half of them streams) runs
before, during and after the outage. Goals:

* routed requests never fail: those routed to the large tier fall back to a smaller one
  and say so (``x-slm-router-reason: fallback:error``);
* requests that *name* the large model get what the policy promises for a named model: its
  error (502 in OpenAI's envelope), never a 500 or a hang; they are not silently downgraded;
* the large tier serves again as soon as the upstream recovers;
* the ledger equals the sum of the costs clients were told.

    flock /tmp/slm-ray.lock .venv/bin/python -m loadtest.faults.large_outage --duration 60
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter

from loadtest.faults.ledger import compare, read_ledger, settle
from loadtest.faults.load import HARD_PROMPTS, Lane, LoadGenerator, Outcome, only, warm_up
from loadtest.faults.report import FaultReport, format_counts, ledger_rows, outcome_rows
from loadtest.faults.runner import main
from loadtest.faults.target import FaultTarget, large_tier, served_name, small_tier

__all__ = ["large_outage", "run"]

NAME = "large_outage"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This fault's options."""
    parser.add_argument("--duration", type=float, default=60.0, help="seconds the upstream answers 500")
    parser.add_argument("--concurrency", type=int, default=4, help="closed-loop clients sending routed requests")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of healthy load before the outage")
    parser.add_argument("--after", type=float, default=8.0, help="seconds of load after the upstream recovers")


async def run(target: FaultTarget, args: argparse.Namespace) -> FaultReport:
    """The fault with the command line's options."""
    return await large_outage(
        target, duration_s=args.duration, concurrency=args.concurrency, warmup_s=args.warmup, after_s=args.after
    )


async def large_outage(
    target: FaultTarget,
    *,
    duration_s: float = 60.0,
    concurrency: int = 4,
    warmup_s: float = 5.0,
    after_s: float = 8.0,
) -> FaultReport:
    """Run the fault on a running gateway (the upstream is healthy again afterwards)."""
    config = target.config
    large = large_tier(config)
    large_model, small_model = served_name(config, large), served_name(config, small_tier(config))
    report = FaultReport(
        NAME,
        f"The fake large upstream answers 500 to every call for {duration_s:g} s under load: {concurrency} clients "
        "send routed requests (about 40% routed to the large tier), 2 send routed requests that score large, 2 "
        "name the large model, 1 the small one (half streams, max_tokens 16); the large tier retries once "
        "(0.25 s backoff) before failing.",
        f"flock /tmp/slm-ray.lock .venv/bin/python -m loadtest.faults.{NAME} --duration {duration_s:g}",
    )
    await warm_up(target.base_url, small_model, large_model)
    prefix = config.accounting.ledger.key_prefix
    before = await asyncio.to_thread(read_ledger, target.redis.url, prefix)
    # One lane per kind of request: behind slow small-model answers, a mixed client would
    # send almost no large-model request during a short outage.
    lanes = [
        Lane(concurrency, only("router")),
        Lane(2, only("router", prompts=HARD_PROMPTS)),
        Lane(2, only(large_model)),
        Lane(1, only(small_model)),
    ]
    generator = LoadGenerator(target.base_url, lanes=lanes, seed=2)
    began = time.monotonic()
    load = asyncio.create_task(generator.run(warmup_s + duration_s + after_s))
    try:
        await asyncio.sleep(warmup_s)
        outage_start = time.monotonic()
        target.upstream.fail_status = 500
        await asyncio.sleep(duration_s)
    finally:
        outage_end = time.monotonic()
        target.reset_upstream()
    outcomes = await load
    ledger, waited = await asyncio.to_thread(settle, target.redis.url, prefix, before, sum(o.ok for o in outcomes))
    check = compare(outcomes, ledger, waited)
    report.seconds = time.monotonic() - began
    report.outcomes = outcomes

    # Requests that started during the outage (less the ~1 s a large call with its retry
    # takes): their large-tier call, made first, met the failing upstream.
    during = [o for o in outcomes if outage_start <= o.started <= outage_end - 1.0]
    routed = [o for o in during if o.model == "router"]
    named_large = [o for o in during if o.model == large_model]
    report.rows += outcome_rows(outcomes, "all phases: ")
    report.rows += outcome_rows(during, "started during the outage: ")
    fell_back = [o for o in routed if o.flagged]
    report.add("during: routed requests / fell back (flagged)", f"{len(routed)} / {len(fell_back)}")
    statuses = Counter(f"{o.label} (retry-after {o.retry_after})" if o.retry_after else o.label for o in named_large)
    report.add("during: named large-model requests, outcome", format_counts(statuses))
    recovered = [o for o in outcomes if o.ok and o.tier == large and o.started >= outage_end]
    recovery = min(o.ended for o in recovered) - outage_end if recovered else None
    recovery_text = f"{recovery:.2f} s" if recovery is not None else "never"
    report.add("large tier answering again after (first large answer after the outage)", recovery_text)
    report.rows += ledger_rows(check)

    server_errors = [o for o in outcomes if o.status is not None and o.status >= 500 and o.model != large_model]
    routed_failed = [o for o in routed if not o.ok]
    report.check(
        "routed requests never fail during the outage",
        bool(routed) and not routed_failed,
        f"{len(routed_failed)} of {len(routed)} failed: {format_counts(_labels(routed_failed))}",
    )
    wrong_tier = [o for o in routed if o.ok and o.tier == large]
    report.check(
        "routed requests are served by a smaller tier; the large-routed ones flagged fallback:error",
        bool(fell_back) and not wrong_tier and all(o.reason == "fallback:error" for o in fell_back),
        f"{len(fell_back)} flagged ({format_counts(Counter(o.tier or '?' for o in fell_back))}), "
        f"{len(wrong_tier)} on the large tier",
    )
    report.check(
        "no 5xx for routed or small-model requests (any phase)",
        not server_errors,
        format_counts(_labels(server_errors)),
    )
    bad_named = [o for o in named_large if o.status != 502]
    report.check(
        "named large-model requests get the policy's answer: 502 upstream error, no fallback, no hang",
        bool(named_large) and not bad_named,
        f"{len(named_large) - len(bad_named)} of {len(named_large)} were 502",
    )
    report.check("the large tier serves again after the outage", recovery is not None, recovery_text)
    report.check(
        "ledger equals the sum of client costs (0 lost)", check.exact, f"lost {check.lost}, extra {check.extra}"
    )
    report.notes.append(
        "Policy (gateway/serving/chat.py, ChatCompletionService.create): only requests for the virtual router "
        "model fail over; a request that names a concrete model gets that model or its error, so named "
        "large-model requests are 502 during the outage rather than a silent downgrade to the small model."
    )
    return report


def _labels(outcomes: list[Outcome]) -> Counter[str]:
    return Counter(f"{o.model}: {o.label}" for o in outcomes)


if __name__ == "__main__":
    sys.exit(main(NAME, run, add_arguments, description=__doc__ or NAME))
