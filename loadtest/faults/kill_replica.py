"""Fault: a replica's process is SIGKILLed under load: the small model's, its engine alone, an ingress one.

Each phase finds the replica actor in Ray's actor table and SIGKILLs a process while
clients send routed, named-small and named-large requests (half streams), and keeps the load
on until Serve's controller reports the replacement RUNNING (for the small model: and a
small-model answer came back). The phases:

* ``small``: the small-model replica's worker process (as the OOM killer would);
* ``engine``: only that replica's vLLM engine-core process. The replica actor lives on and
  answers every call with an error until Serve's health checks (3 failures in a row) mark it
  unhealthy and replace it, so this is the slow path of a small-tier outage;
* ``ingress``: one ingress replica's worker process.

A client that is refused with ``Retry-After`` waits that long before its next request, as
the openai SDK does. ``--ignore-retry-after`` resends at once, as the harness used to: ~18
refusals a second that compete with the replacement's cold start for the CPU (finding 9 in
docs/reliability.md).

Goals:

* no client fails beyond the requests in flight at the moment of the kill; requests that
  arrive while the replica is gone (or its engine dead) fail over (routed ones, flagged
  ``escalated:unavailable``) or, when they name the dead model, get a retryable 503 with
  ``Retry-After``;
* the replica comes back (recovery time: until RUNNING, and until its first answer);
* no vLLM engine-core process is orphaned by the kill;
* the ledger loses nothing: every answer with a cost is in it (entries for requests the
  kill cut off mid-way are allowed, counted as "without a client answer").

The ingress phase needs ``ingress.num_replicas >= 2`` (the stack's default): with a single
ingress replica, every request that reaches the proxy while the replacement starts waits in
the proxy's queue (about 15 s here), and those in flight on the killed one fail.

    flock /tmp/slm-ray.lock .venv/bin/python -m loadtest.faults.kill_replica --duration 300
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections import Counter
from dataclasses import dataclass

from loadtest.faults import cluster
from loadtest.faults.ledger import compare, read_ledger, settle
from loadtest.faults.load import MAX_RETRY_AFTER_S, Lane, LoadGenerator, Outcome, only, warm_up
from loadtest.faults.report import FaultReport, format_counts, in_flight_at, ledger_rows, outcome_rows
from loadtest.faults.runner import main
from loadtest.faults.target import FaultTarget, large_tier, served_name, small_tier

__all__ = ["PHASES", "Phase", "kill_replica", "run"]

NAME = "kill_replica"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This fault's options."""
    parser.add_argument(
        "--duration", type=float, default=300.0, help="most seconds to wait for a replacement, per phase"
    )
    parser.add_argument("--concurrency", type=int, default=3, help="closed-loop clients sending routed requests")
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds of load before each kill")
    parser.add_argument("--after", type=float, default=5.0, help="seconds of load after recovery")
    parser.add_argument(
        "--think",
        type=float,
        default=0.0,
        help="seconds each client waits between requests (0: back to back, the harshest load)",
    )
    parser.add_argument("--phases", default=",".join(PHASES), help=f"what to kill, in order (of {', '.join(PHASES)})")
    parser.add_argument(
        "--ignore-retry-after",
        action="store_true",
        help="clients resend at once after a refusal (by default they wait out Retry-After, as the openai SDK does)",
    )
    parser.add_argument(
        "--max-failover", type=float, default=10.0, help="goal: most seconds a routed request waits while it is down"
    )
    parser.add_argument(
        "--max-engine-stop",
        type=float,
        default=30.0,
        help="goal (engine phase): most seconds until Serve stops the replica whose engine died",
    )


async def run(target: FaultTarget, args: argparse.Namespace) -> FaultReport:
    """The fault with the command line's options."""
    return await kill_replica(
        target,
        max_recovery_s=args.duration,
        concurrency=args.concurrency,
        warmup_s=args.warmup,
        after_s=args.after,
        phases=tuple(p.strip() for p in args.phases.split(",") if p.strip()),
        max_failover_s=args.max_failover,
        max_engine_stop_s=args.max_engine_stop,
        honour_retry_after=not args.ignore_retry_after,
        think_s=args.think,
    )


@dataclass(frozen=True)
class Phase:
    """What one phase kills: a replica's worker process, or only its vLLM engine core."""

    label: str
    deployment: str
    #: The load generator's seed, one per phase so each phase's request mix is reproducible.
    seed: int
    engine_only: bool = False

    @property
    def small(self) -> bool:
        """The small model's deployment (it has a cold start and engine-core processes)."""
        return self.deployment == cluster.SMALL


#: The phases by command-line name, in their default order.
PHASES = {
    "small": Phase("small model", cluster.SMALL, seed=5),
    "engine": Phase("small model's engine", cluster.SMALL, seed=7, engine_only=True),
    "ingress": Phase("ingress", cluster.INGRESS, seed=6),
}


@dataclass
class _Recovery:
    gone_s: float | None
    #: When a poll first saw the replacement RUNNING.
    running_s: float | None
    #: When the last poll that still saw no replacement began: the replacement went RUNNING
    #: (and could take requests) after this, and before ``running_s``.
    not_running_s: float | None
    new_pids: list[int]


def _wait_running(deployment: str, old_pid: int, expected: int, timeout_s: float) -> _Recovery:
    """Poll until the replica ``old_pid`` is gone and ``expected`` replicas are RUNNING again."""
    start = time.monotonic()
    gone_s: float | None = None
    not_running_s = 0.0
    while time.monotonic() - start < timeout_s:
        polled_s = time.monotonic() - start
        with contextlib.suppress(Exception):
            pids = [a.pid for a in cluster.replica_actors(deployment)]
            if gone_s is None and old_pid not in pids:
                gone_s = time.monotonic() - start
            running = cluster.replica_states(deployment).get("RUNNING", 0)
            if gone_s is not None and running >= expected and len(pids) >= expected:
                return _Recovery(gone_s, time.monotonic() - start, not_running_s, pids)
            not_running_s = polled_s  # only a poll that got an answer counts
        time.sleep(0.25)
    return _Recovery(gone_s, None, None, [a.pid for a in cluster.replica_actors(deployment)])


def _steady_victim(deployment: str, engine_only: bool, timeout_s: float) -> tuple[cluster.ReplicaActor, int, int]:
    """Wait until ``deployment`` is steady and choose the replica to kill; ``(victim, replicas,
    pid to kill)``.

    Steady: every replica Serve knows of is RUNNING, and as many ALIVE actors exist. The first
    ALIVE actor, taken without waiting, was once a replica Serve was still starting, right
    after the ``small`` phase on a loaded CI box: its children were untitled processes, no vLLM
    engine core to kill. For the ``engine`` phase the victim is a replica whose engine-core
    process exists.
    """
    deadline = time.monotonic() + timeout_s
    seen = "no answer from Ray"
    while True:
        with contextlib.suppress(Exception):
            states = cluster.replica_states(deployment)
            actors = cluster.replica_actors(deployment)
            running = states.get("RUNNING", 0)
            seen = f"replica states {states}, ALIVE actors {[(a.name, a.pid) for a in actors]}"
            if running and running == sum(states.values()) == len(actors):
                if not engine_only:
                    return actors[0], running, actors[0].pid
                for actor in actors:
                    if cores := cluster.engine_cores_of(actor.pid):
                        return actor, running, cores[0]
                trees = [" ".join(cluster.process_tree(a.pid)[:20]) for a in actors]
                seen += f"; no vLLM engine-core process under any of them: {trees}"
        if time.monotonic() >= deadline:
            raise RuntimeError(f"{deployment} not steady within {timeout_s:g} s: {seen}")
        time.sleep(0.5)


async def _phase(
    target: FaultTarget,
    report: FaultReport,
    phase: Phase,
    *,
    max_recovery_s: float,
    concurrency: int,
    warmup_s: float,
    after_s: float,
    max_failover_s: float,
    max_engine_stop_s: float,
    honour_retry_after: bool,
    think_s: float,
) -> list[Outcome]:
    deployment = phase.deployment
    config = target.config
    small = small_tier(config)
    small_model, large_model = served_name(config, small), served_name(config, large_tier(config))
    victim, expected, doomed = await asyncio.to_thread(_steady_victim, deployment, phase.engine_only, max_recovery_s)
    await warm_up(target.base_url, small_model, large_model)
    prefix = config.accounting.ledger.key_prefix
    before = await asyncio.to_thread(read_ledger, target.redis.url, prefix)
    stop = asyncio.Event()
    # One lane per kind of request, so slow small-model answers do not starve the others.
    lanes = [Lane(concurrency, only("router")), Lane(2, only(small_model)), Lane(1, only(large_model))]
    generator = LoadGenerator(
        target.base_url,
        lanes=lanes,
        timeout_s=config.tiers[small].timeout_s + 60,
        honour_retry_after=honour_retry_after,
        think_s=think_s,
        seed=phase.seed,
    )
    load = asyncio.create_task(generator.run(warmup_s + 2 * max_recovery_s, stop))
    try:
        await asyncio.sleep(warmup_s)
        killed_at = time.monotonic()
        cluster.kill(doomed)
        recovery = await asyncio.to_thread(_wait_running, deployment, victim.pid, expected, max_recovery_s)
        first_answer: float | None = None
        if phase.small:
            deadline = time.monotonic() + max_recovery_s
            while first_answer is None and time.monotonic() < deadline:
                answers = [o.ended for o in generator.outcomes if o.ok and o.tier == small and o.started > killed_at]
                first_answer = min(answers) - killed_at if answers else None
                await asyncio.sleep(0.25)
        await asyncio.sleep(after_s)
    finally:
        stop.set()
    outcomes = await load
    ledger, waited = await asyncio.to_thread(settle, target.redis.url, prefix, before, sum(o.ok for o in outcomes))
    check = compare(outcomes, ledger, waited)

    in_flight = in_flight_at(outcomes, killed_at)
    after = [o for o in outcomes if o.started >= killed_at]
    # While the small model is gone, a request that names it can only be refused: a 503 with
    # Retry-After is the retryable answer the goal allows.
    retryable = [o for o in after if not o.ok and o.status == 503 and o.retry_after]
    other_failures = [o for o in after if not o.ok and o not in retryable]
    title = f"{phase.label}: "
    killed = f"engine core (pid {doomed}) of " if phase.engine_only else ""
    report.add(f"{title}killed", f"{killed}{victim.name} (pid {victim.pid}) of {expected}")
    report.rows += outcome_rows(outcomes, title)
    report.add(
        f"{title}in flight at the kill / failed",
        f"{len(in_flight)} / {sum(not o.ok for o in in_flight)} "
        f"({format_counts(Counter(f'{o.model}: {o.label}' for o in in_flight if not o.ok))})",
    )
    report.add(
        f"{title}started after the kill: sent / failed over (flagged) / retryable 503 / other failures",
        f"{len(after)} / {sum(o.flagged for o in after)} / {len(retryable)} / {len(other_failures)}",
    )
    if other_failures:
        report.add(
            f"{title}other failures after the kill",
            format_counts(Counter(f"{o.model}: {o.label}" for o in other_failures)),
        )
    running = f"{recovery.running_s:.1f} s" if recovery.running_s is not None else f"not within {max_recovery_s:g} s"
    if phase.engine_only:
        # The actor outlives its engine: how long Serve took to notice and stop it.
        gone = f"{recovery.gone_s:.1f} s" if recovery.gone_s is not None else f"not within {max_recovery_s:g} s"
        report.add(f"{title}replica with the dead engine stopped after", gone)
        # Three failed health checks (2 s apart by default) and a short stop; a stalled
        # controller (it once imported vLLM and torch to read the check's error) shows here.
        report.check(
            f"{title}Serve stops the replica with the dead engine within {max_engine_stop_s:g} s",
            recovery.gone_s is not None and recovery.gone_s <= max_engine_stop_s,
            gone,
        )
    report.add(f"{title}replacement RUNNING after", f"{running} (pids now {recovery.new_pids})")
    if phase.small:
        answer = f"{first_answer:.1f} s" if first_answer is not None else "never"
        report.add(f"{title}first small-model answer after the kill", answer)
        orphans = await asyncio.to_thread(_orphan_engine_cores, recovery.new_pids)
        report.add(f"{title}orphaned vLLM engine-core processes", orphans or "none")
        report.check(f"{title}no orphaned engine-core process", not orphans, str(orphans))
        report.check(f"{title}small-model answers again", first_answer is not None, answer)
        # While no small replica runs, routed requests should fail over at once (to the large
        # tier, flagged), and named ones get a prompt 503; waiting is what to avoid. Once the
        # replacement is RUNNING, requests go to it: their latency is its cold start, not a
        # failover wait, so they are reported apart. "Down" ends when the last poll that saw no
        # replacement began: a request sent between that and the poll that saw it RUNNING may
        # already have gone to the replacement (one did in CI, and waited out its cold start).
        answered_s = first_answer if first_answer is not None else max_recovery_s
        down_until = killed_at + (recovery.not_running_s if recovery.not_running_s is not None else answered_s)
        down = [o for o in after if o.started < down_until]
        warming = [o for o in after if down_until <= o.started < killed_at + answered_s]
        routed_down = [o for o in down if o.model == "router"]
        slowest = max((o.ended - o.started for o in routed_down), default=0.0)
        report.add(
            f"{title}routed requests started while it was down (kill to RUNNING): sent / flagged / slowest",
            f"{len(routed_down)} / {sum(o.flagged for o in routed_down)} "
            f"({format_counts(Counter(o.reason or '' for o in routed_down if o.flagged))}) / {slowest:.1f} s",
        )
        if routed_down:
            worst = max(routed_down, key=lambda o: o.ended - o.started)
            report.add(
                f"{title}slowest of those: started after the kill / answered by / status",
                f"{worst.started - killed_at:.1f} s (RUNNING seen at {recovery.running_s or 0.0:.1f} s) / "
                f"{worst.tier or '-'} ({worst.reason or '-'}) / {worst.label}",
            )
        named_down = [o for o in down if o.model == small_model]
        report.add(
            f"{title}named small-model requests started while it was down (kill to RUNNING): outcome / slowest",
            f"{format_counts(Counter(o.label for o in named_down))} / "
            f"{max((o.ended - o.started for o in named_down), default=0.0):.1f} s",
        )
        report.add(
            f"{title}requests started between RUNNING and the first answer: sent / slowest (cold start)",
            f"{len(warming)} / {max((o.ended - o.started for o in warming), default=0.0):.1f} s",
        )
        report.check(
            f"{title}routed requests fail over within {max_failover_s:g} s while the small model is down",
            slowest <= max_failover_s,
            f"slowest routed request {slowest:.1f} s (small-tier timeout {config.tiers[small].timeout_s:g} s)",
        )
    report.rows += [(title + k, v) for k, v in ledger_rows(check)]
    report.check(
        f"{title}no failure beyond the requests in flight at the kill (503 + Retry-After allowed for named models)",
        not other_failures,
        format_counts(Counter(f"{o.model}: {o.label}" for o in other_failures)),
    )
    report.check(f"{title}replacement RUNNING", recovery.running_s is not None, running)
    report.check(
        f"{title}no lost ledger entry (extra entries only for requests cut off by the kill)",
        check.lost == 0 and check.extra <= len(in_flight),
        f"lost {check.lost}, extra {check.extra}, in flight {len(in_flight)}",
    )
    return outcomes


def _orphan_engine_cores(replica_pids: list[int]) -> list[int]:
    """Engine-core processes that belong to no live small-model replica."""
    owned = {core for pid in replica_pids for core in cluster.engine_cores_of(pid)}
    return [pid for pid in cluster.engine_core_pids() if pid not in owned]


async def kill_replica(
    target: FaultTarget,
    *,
    max_recovery_s: float = 300.0,
    concurrency: int = 3,
    warmup_s: float = 8.0,
    after_s: float = 5.0,
    phases: tuple[str, ...] = tuple(PHASES),
    max_failover_s: float = 10.0,
    max_engine_stop_s: float = 30.0,
    honour_retry_after: bool = True,
    think_s: float = 0.0,
) -> FaultReport:
    """Run the phases on a running gateway (each waits for its replacement replica).

    ``think_s`` paces each client: failed-over requests take well under a second, so
    back-to-back clients send ~10 a second, and on a small machine that load competes with the
    replacement's cold start for the CPU.
    """
    config = target.config
    small = small_tier(config)
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        raise ValueError(f"unknown phase(s) {unknown}; choose from {list(PHASES)}")
    report = FaultReport(
        NAME,
        "SIGKILL of a replica's worker process (or of the small replica's vLLM engine core) under load "
        f"({concurrency} clients send routed requests, 2 name "
        f"the small model, 1 the large one; half streams), one phase per deployment: {', '.join(phases)}. "
        + (
            f"A refused client waits out Retry-After (at most {MAX_RETRY_AFTER_S:g} s) before its next request. "
            if honour_retry_after
            else "A refused client sends its next request at once (Retry-After ignored). "
        )
        + (f"Each client waits {think_s:g} s between requests. " if think_s else "")
        + f"Ingress replicas: {config.ingress.num_replicas}; small-tier timeout {config.tiers[small].timeout_s:g} s.",
        f"flock /tmp/slm-ray.lock .venv/bin/python -m loadtest.faults.{NAME} --phases {','.join(phases)} "
        f"--duration {max_recovery_s:g}"
        + ("" if honour_retry_after else " --ignore-retry-after")
        + (f" --think {think_s:g}" if think_s else ""),
    )
    began = time.monotonic()
    for phase in phases:
        report.outcomes += await _phase(
            target,
            report,
            PHASES[phase],
            max_recovery_s=max_recovery_s,
            concurrency=concurrency,
            warmup_s=warmup_s,
            after_s=after_s,
            max_failover_s=max_failover_s,
            max_engine_stop_s=max_engine_stop_s,
            honour_retry_after=honour_retry_after,
            think_s=think_s,
        )
    report.seconds = time.monotonic() - began
    report.notes.append(
        f"Named small-model requests ({served_name(config, small)}) cannot fail over (the policy fails over "
        "routed requests only): while the small replica is gone they get 503 with Retry-After. An ingress "
        "replica learns of the death from its first call to the dead replica (or, failing that, from the "
        "controller through its replica watch) and then refuses calls, cancelling any queued in Serve. "
        "A replica whose engine core died answers every call with a 503 of its own (routed requests fail "
        "over on it) until Serve's health checks replace it. "
        "Requests sent once the replacement is RUNNING go to it and wait for its cold start: reported "
        "apart, not counted as failover waits."
    )
    return report


if __name__ == "__main__":
    sys.exit(main(NAME, run, add_arguments, description=__doc__ or NAME))
