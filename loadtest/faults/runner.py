"""The command line shared by every fault module: start a stack, run the fault, print the report.

``python -m loadtest.faults.<name> [--duration S] [--output FILE]`` starts its own stack
(about a minute), runs the fault once, prints its markdown table and exits 0 when every
goal was met, 1 otherwise. Always under ``flock /tmp/slm-ray.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from loadtest.faults.report import FaultReport
from loadtest.faults.stack import FaultStack, StackOptions
from loadtest.faults.target import FaultTarget

__all__ = ["FaultRun", "dump_outcomes", "main", "quiet_logs", "write_text"]

#: ``run(stack, args)``: inject the fault under load and report.
FaultRun = Callable[[FaultTarget, argparse.Namespace], Coroutine[Any, Any, FaultReport]]


def quiet_logs() -> None:
    """Keep the report readable: the gateway's and Ray's own logs go to Ray's log folder."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("ray", "ray.serve", "LiteLLM", "litellm", "httpx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def main(
    name: str,
    run: FaultRun,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    *,
    description: str,
    argv: list[str] | None = None,
) -> int:
    """Parse arguments, run the fault on a fresh stack, print (and optionally write) the report."""
    parser = argparse.ArgumentParser(prog=f"python -m loadtest.faults.{name}", description=description)
    add_arguments(parser)
    parser.add_argument("--output", type=Path, help="also write the markdown report to this file")
    parser.add_argument("--dump", type=Path, help="write every request's outcome to this file (JSON lines)")
    parser.add_argument("--ingress-replicas", type=int, default=StackOptions.ingress_replicas, help="ingress replicas")
    args = parser.parse_args(argv)
    options = StackOptions(ingress_replicas=args.ingress_replicas)
    quiet_logs()
    started = time.monotonic()
    print(f"[{name}] starting the stack (about a minute)...", flush=True)
    with FaultStack(options) as stack:
        print(f"[{name}] stack ready in {time.monotonic() - started:.0f} s at {stack.base_url}", flush=True)
        report = asyncio.run(run(stack, args))
        print(f"[{name}] fault done in {report.seconds:.0f} s; stopping the stack", flush=True)
    text = report.markdown()
    print(text, flush=True)
    if args.output is not None:
        write_text(args.output, text)
    if args.dump is not None:
        dump_outcomes(args.dump, report)
    return 0 if report.passed else 1


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def dump_outcomes(path: Path, report: FaultReport) -> None:
    """One JSON object per request (times relative to the first request's start)."""
    t0 = min((o.started for o in report.outcomes), default=0.0)
    lines = []
    for outcome in report.outcomes:
        record = dataclasses.asdict(outcome)
        record["started"] = round(outcome.started - t0, 3)
        record["ended"] = round(outcome.ended - t0, 3)
        record["first_chunk"] = None if outcome.first_chunk is None else round(outcome.first_chunk - t0, 3)
        record["fault"] = report.name
        lines.append(json.dumps(record))
    write_text(path, "\n".join(lines) + "\n")


if __name__ == "__main__":  # pragma: no cover - a library module
    sys.exit("run one of the fault modules, e.g. python -m loadtest.faults.large_outage")
