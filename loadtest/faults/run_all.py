"""Run every fault in sequence on one shared stack and write a markdown report.

One stack start (about a minute) serves all faults; the order goes from the least to the
most disruptive (the replica kills last), and each fault leaves the stack healthy for the
next. With the defaults the whole run takes about twelve minutes on a 2-core machine.

    flock /tmp/slm-ray.lock .venv/bin/python -m loadtest.faults.run_all --output loadtest/faults/out/results.md
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from loadtest.faults.disconnects import disconnects
from loadtest.faults.kill_replica import kill_replica
from loadtest.faults.large_outage import large_outage
from loadtest.faults.redis_restart import redis_restart
from loadtest.faults.report import FaultReport
from loadtest.faults.runner import dump_outcomes, quiet_logs, write_text
from loadtest.faults.stack import FaultStack

__all__ = ["machine_line", "main", "run_all"]

FAULTS = ("large_outage", "redis_restart", "disconnects", "kill_replica")


def machine_line() -> str:
    """CPU, cores, memory and load: the figures depend on them (the machine may be shared)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    try:
        import psutil

        memory = f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    except ImportError:  # pragma: no cover - psutil ships with the venv
        memory = "RAM unknown"
    return f"{os.cpu_count()} cores ({cpu}), {memory}, no GPU; load average at start {load[0]:.1f}"


async def run_all(stack: FaultStack, args: argparse.Namespace) -> list[FaultReport]:
    """Every selected fault, in order, on ``stack``."""
    reports: list[FaultReport] = []
    for name in args.faults:
        print(f"[run_all] {name}...", flush=True)
        try:
            if name == "large_outage":
                report = await large_outage(stack, duration_s=args.outage)
            elif name == "redis_restart":
                report = await redis_restart(stack, down_s=args.redis_down)
            elif name == "disconnects":
                report = await disconnects(stack, clients=args.clients)
            else:
                report = await kill_replica(stack, max_recovery_s=args.recovery)
        except Exception as exc:
            # One broken fault must not hide the others' results.
            logging.getLogger(__name__).exception("fault %s crashed", name)
            report = FaultReport(name, "The fault script itself failed.", f"run_all --faults {name}")
            report.check("the fault ran to the end", False, f"{type(exc).__name__}: {exc}")
        print(f"[run_all] {name}: {'PASS' if report.passed else 'FAIL'} in {report.seconds:.0f} s", flush=True)
        print(report.markdown(), flush=True)
        reports.append(report)
    return reports


def render(reports: list[FaultReport], started: datetime, total_s: float, startup_s: float, machine: str) -> str:
    """The whole markdown document: a summary table, then each fault's section."""
    lines = [
        "## Faults under load",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC on {machine}. Stack start-up {startup_s:.0f} s; all faults "
        f"{total_s:.0f} s. Command: `flock /tmp/slm-ray.lock .venv/bin/python -m loadtest.faults.run_all`.",
        "",
        "| fault | result | requests | failed | flagged | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for report in reports:
        outcomes = report.outcomes
        failed = sum(not o.ok for o in outcomes)
        flagged = sum(o.flagged for o in outcomes)
        lines.append(
            f"| `{report.name}` | {'PASS' if report.passed else '**FAIL**'} | {len(outcomes)} | {failed} | "
            f"{flagged} | {report.seconds:.0f} |"
        )
    lines.append("")
    for report in reports:
        lines.append(report.markdown())
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Start one stack, run the faults, print and write the report; exit 1 if a goal was missed."""
    parser = argparse.ArgumentParser(prog="python -m loadtest.faults.run_all", description=__doc__)
    parser.add_argument("--faults", type=lambda s: s.split(","), default=list(FAULTS), help="comma-separated subset")
    parser.add_argument("--outage", type=float, default=30.0, help="large_outage: seconds of upstream 500s")
    parser.add_argument("--redis-down", type=float, default=10.0, help="redis_restart: seconds Redis is down")
    parser.add_argument("--clients", type=int, default=1000, help="disconnects: streams that hang up")
    parser.add_argument("--recovery", type=float, default=300.0, help="kill_replica: most seconds per recovery")
    parser.add_argument("--output", type=Path, default=Path("loadtest/faults/out/results.md"))
    parser.add_argument("--dump", type=Path, help="folder for each fault's per-request outcomes (JSON lines)")
    args = parser.parse_args(argv)
    unknown = set(args.faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults: {sorted(unknown)}")
    quiet_logs()
    machine = machine_line()
    started = datetime.now(UTC)
    t0 = time.monotonic()
    print("[run_all] starting the stack (about a minute)...", flush=True)
    with FaultStack() as stack:
        startup_s = time.monotonic() - t0
        print(f"[run_all] stack ready in {startup_s:.0f} s at {stack.base_url}", flush=True)
        t1 = time.monotonic()
        reports = asyncio.run(run_all(stack, args))
        total_s = time.monotonic() - t1
    text = render(reports, started, total_s, startup_s, machine)
    write_text(args.output, text)
    if args.dump is not None:
        for report in reports:
            dump_outcomes(args.dump / f"{report.name}.jsonl", report)
    print(f"[run_all] written to {args.output}", flush=True)
    return 0 if all(r.passed for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
