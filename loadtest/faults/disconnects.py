"""Fault: a thousand clients start a stream and hang up mid-stream; some read very slowly.

After a warm-up of ordinary load, two rounds of ``--clients / 2`` disconnecting streams
(each reads 1 to 3 content chunks, then closes its connection) run alongside slow readers
(one SSE line per 0.2 s) and clients that give up before the response starts. Then two
sharp probes of cancellation: long generations (256 tokens) hung up after their first chunk,
and long generations abandoned before their first byte; the engine must be idle in far less
time than generating them would take. Goals:

* afterwards nothing is left open: the gateway's ``slm_router_open_requests`` is 0 on
  every ingress replica, and the vLLM engine has no request in flight, unfinished,
  running or waiting;
* a hang-up cancels the generation (the probes: idle within seconds, not a generation's time);
* no memory growth: the RSS of each ingress replica and of the small-model replica (with
  its vLLM engine-core processes) grows by at most ``--rss-bound-mib`` from the first round
  to the second (the first round warms allocators and caches up; a leak keeps growing);
* every stream that started (status 200 received) has a ledger entry, settled on
  disconnect with the tokens generated so far.

    flock /tmp/slm-ray.lock .venv/bin/python -m loadtest.faults.disconnects --clients 1000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from typing import Any

import aiohttp

from loadtest.faults import cluster
from loadtest.faults.ledger import read_ledger, settle
from loadtest.faults.load import (
    CHAT_PATH,
    PROMPTS,
    LoadGenerator,
    Outcome,
    RequestSpec,
    default_mix,
    finish_stream,
    read_sse_line,
    send,
    warm_up,
)
from loadtest.faults.metrics import open_requests
from loadtest.faults.report import FaultReport, format_counts, outcome_rows
from loadtest.faults.runner import main
from loadtest.faults.target import FaultTarget, large_tier, served_name, small_tier

__all__ = ["disconnects", "run"]

NAME = "disconnects"
_MIB = 1024 * 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This fault's options."""
    parser.add_argument("--clients", type=int, default=1000, help="streams that disconnect mid-stream")
    parser.add_argument("--concurrency", type=int, default=32, help="disconnecting streams open at once")
    parser.add_argument("--slow-readers", type=int, default=10, help="clients that read one SSE line per 0.2 s")
    parser.add_argument("--early-aborts", type=int, default=40, help="clients that hang up before the response")
    parser.add_argument("--warmup", "--duration", dest="warmup", type=float, default=10.0, help="seconds of load")
    parser.add_argument("--rss-bound-mib", type=float, default=32.0, help="allowed RSS growth, round 1 to 2")


async def run(target: FaultTarget, args: argparse.Namespace) -> FaultReport:
    """The fault with the command line's options."""
    return await disconnects(
        target,
        clients=args.clients,
        concurrency=args.concurrency,
        slow_readers=args.slow_readers,
        early_aborts=args.early_aborts,
        warmup_s=args.warmup,
        rss_bound_mib=args.rss_bound_mib,
    )


def _body(spec: RequestSpec) -> dict[str, Any]:
    return {
        "model": spec.model,
        "messages": [{"role": "user", "content": spec.prompt}],
        "max_tokens": spec.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def _hang_up_mid_stream(session: aiohttp.ClientSession, base_url: str, spec: RequestSpec, after: int) -> Outcome:
    """Read ``after`` content chunks, then close the connection without reading the rest."""
    outcome = Outcome(model=spec.model, stream=True, started=time.monotonic())
    try:
        async with session.post(
            base_url + CHAT_PATH, json=_body(spec), timeout=aiohttp.ClientTimeout(total=120)
        ) as response:
            outcome.status = response.status
            outcome.tier = response.headers.get("x-slm-router-tier")
            outcome.reason = response.headers.get("x-slm-router-reason")
            if response.status == 200:
                async for raw in response.content:
                    if raw.startswith(b"data: ") and b'"content":"' in raw and b'"content":""' not in raw:
                        outcome.chunks += 1
                        if outcome.first_chunk is None:
                            outcome.first_chunk = time.monotonic()
                        if outcome.chunks >= after:
                            break
                    if raw.startswith(b"data: [DONE]"):
                        outcome.extra["finished_before_hang_up"] = True
                        break
                response.close()  # drop the TCP connection: the gateway sees a disconnect
            else:
                outcome.error_message = (await response.text())[:200]
    except (aiohttp.ClientError, TimeoutError) as exc:
        outcome.error = type(exc).__name__
    outcome.ended = time.monotonic()
    outcome.extra["hung_up"] = True
    return outcome


async def _give_up_early(session: aiohttp.ClientSession, base_url: str, spec: RequestSpec, after_s: float) -> Outcome:
    """Send a stream request and abandon it after ``after_s`` seconds, usually before the first byte."""
    outcome = Outcome(model=spec.model, stream=True, started=time.monotonic())

    async def attempt() -> None:
        async with session.post(base_url + CHAT_PATH, json=_body(spec)) as response:
            outcome.status = response.status
            await response.read()

    try:
        await asyncio.wait_for(attempt(), after_s)
    except TimeoutError:
        outcome.error = "abandoned"
    except aiohttp.ClientError as exc:
        outcome.error = type(exc).__name__
    outcome.ended = time.monotonic()
    return outcome


async def _slow_reader(session: aiohttp.ClientSession, base_url: str, spec: RequestSpec) -> Outcome:
    """A whole stream read one SSE line per 0.2 s (the request is recorded like any other)."""
    outcome = Outcome(model=spec.model, stream=True, started=time.monotonic())
    try:
        async with session.post(
            base_url + CHAT_PATH, json=_body(spec), timeout=aiohttp.ClientTimeout(total=300)
        ) as response:
            outcome.status = response.status
            outcome.tier = response.headers.get("x-slm-router-tier")
            outcome.reason = response.headers.get("x-slm-router-reason")
            done = False
            lines = 0
            while not done:
                raw = await response.content.readline()
                if not raw:
                    break
                lines += 1
                done = read_sse_line(raw.decode(errors="replace"), outcome)
                if raw.strip():
                    await asyncio.sleep(0.2)
            outcome.extra["lines"] = lines
            if response.status == 200:
                finish_stream(outcome, done)
                if outcome.error is None and outcome.cost_nanos is None:
                    outcome.error = "no_cost"
    except (aiohttp.ClientError, TimeoutError) as exc:
        outcome.error = type(exc).__name__
    outcome.ended = time.monotonic()
    return outcome


async def _storm(
    base_url: str,
    models: tuple[str, str],
    clients: int,
    concurrency: int,
    slow_readers: int,
    early_aborts: int,
    rng: random.Random,
) -> list[Outcome]:
    """One round: disconnecting streams (bounded concurrency), slow readers and early aborts at once.

    One stream in ten may reach the small model (6% name it, 4% are routed): on a shared
    2-core CPU it starts about one stream a second, so these get their own, smaller bound
    (a quarter of ``concurrency``) and the rest (the large tier, through litellm) the full
    one. The cancellation probes of :func:`disconnects` load the small model on purpose.
    """
    small_model, large_model = models
    small_slots = asyncio.Semaphore(max(1, concurrency // 4))
    large_slots = asyncio.Semaphore(concurrency)

    def spec(roll: float, max_tokens: int = 64) -> RequestSpec:
        model = small_model if roll < 0.06 else "router" if roll < 0.10 else large_model
        return RequestSpec(model, rng.choice(PROMPTS), True, max_tokens)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def hang_up() -> Outcome:
            request = spec(rng.random())
            async with large_slots if request.model == large_model else small_slots:
                return await _hang_up_mid_stream(session, base_url, request, rng.randint(1, 3))

        async def give_up() -> Outcome:
            request = spec(rng.random())
            async with large_slots if request.model == large_model else small_slots:
                return await _give_up_early(session, base_url, request, rng.uniform(0.02, 0.3))

        # Early give-ups queue with the hang-ups in random order, so they are spread over the round.
        queued = [hang_up() for _ in range(clients)] + [give_up() for _ in range(early_aborts)]
        rng.shuffle(queued)
        # Slow readers read the large tier's fast stream: what is slow is the client alone.
        slow = RequestSpec(large_model, "Say hello.", True, 64)
        tasks = queued + [_slow_reader(session, base_url, slow) for _ in range(slow_readers)]
        return list(await asyncio.gather(*tasks))


async def _cancellation_probe(
    base_url: str, small_model: str, count: int, *, before_first_byte: bool
) -> tuple[list[Outcome], float]:
    """``count`` 256-token small-model streams dropped early; seconds until the engine is idle again."""
    spec = RequestSpec(small_model, "Write a long story about a lighthouse keeper.", True, 256)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        if before_first_byte:
            tasks = [_give_up_early(session, base_url, spec, 0.05) for _ in range(count)]
        else:
            tasks = [_hang_up_mid_stream(session, base_url, spec, 1) for _ in range(count)]
        outcomes = list(await asyncio.gather(*tasks))
    last_client_left = max(o.ended for o in outcomes)
    while time.monotonic() - last_client_left < 120:
        stats = await cluster.engine_stats()
        if not stats.get("in_flight") and not stats.get("unfinished"):
            break
        await asyncio.sleep(0.2)
    return outcomes, time.monotonic() - last_client_left


def _rss() -> dict[str, int]:
    sizes: dict[str, int] = {}
    for deployment in (cluster.INGRESS, cluster.SMALL):
        for actor in cluster.replica_actors(deployment):
            sizes[f"{deployment} pid {actor.pid}"] = cluster.tree_rss(actor.pid)
    return sizes


async def _quiet(base_url: str, replicas: int, timeout_s: float) -> tuple[dict[str, float], dict[str, Any], float]:
    """Wait until no request is open anywhere; returns the last readings and the seconds waited."""
    start = time.monotonic()
    while True:
        gauges = await open_requests(base_url, replicas)
        stats = await cluster.engine_stats()
        idle = len(gauges) >= replicas and not any(gauges.values())
        idle = idle and not stats.get("in_flight") and not stats.get("unfinished")
        if idle or time.monotonic() - start > timeout_s:
            return gauges, stats, time.monotonic() - start
        await asyncio.sleep(0.5)


async def disconnects(
    target: FaultTarget,
    *,
    clients: int = 1000,
    concurrency: int = 32,
    slow_readers: int = 10,
    early_aborts: int = 40,
    warmup_s: float = 10.0,
    rss_bound_mib: float = 32.0,
    probe_streams: int = 16,
) -> FaultReport:
    """Run the fault on a running gateway."""
    config = target.config
    models = (served_name(config, small_tier(config)), served_name(config, large_tier(config)))
    base_url = target.base_url
    report = FaultReport(
        NAME,
        f"{clients} clients start a stream (6% name the small model, 4% routed, 90% name the large one; "
        f"max_tokens 64) and hang up after 1-3 content chunks, {concurrency} at a time ({max(1, concurrency // 4)} "
        "for streams that may reach the small model), in two rounds; with each round "
        f"{slow_readers} slow readers of large-model streams "
        f"and {early_aborts} clients that give up before the response. Warm-up: {warmup_s:g} s of mixed load. "
        f"Cancellation probes: {probe_streams} streams of 256 tokens dropped after the first chunk, then "
        f"{probe_streams} dropped 50 ms after sending.",
        f"flock /tmp/slm-ray.lock .venv/bin/python -m loadtest.faults.{NAME} --clients {clients}",
    )
    began = time.monotonic()
    rng = random.Random(4)
    await warm_up(base_url, *models)
    prefix = config.accounting.ledger.key_prefix
    replicas = config.ingress.num_replicas
    before = await asyncio.to_thread(read_ledger, target.redis.url, prefix)
    warm = await LoadGenerator(base_url, concurrency=6, mix=default_mix(*models), seed=4).run(warmup_s)
    rss_warm = await asyncio.to_thread(_rss)
    first = await _storm(base_url, models, clients // 2, concurrency, slow_readers, early_aborts, rng)
    await _quiet(base_url, replicas, 60)
    rss_first = await asyncio.to_thread(_rss)
    second = await _storm(base_url, models, clients - clients // 2, concurrency, slow_readers, early_aborts, rng)
    gauges, stats, quiet_s = await _quiet(base_url, replicas, 60)
    rss_second = await asyncio.to_thread(_rss)
    mid_probe, mid_idle_s = await _cancellation_probe(base_url, models[0], probe_streams, before_first_byte=False)
    early_probe, early_idle_s = await _cancellation_probe(base_url, models[0], probe_streams, before_first_byte=True)
    # vLLM's running/waiting gauges refresh with engine steps: one more request makes them current.
    async with aiohttp.ClientSession() as session:
        probe = await send(session, base_url, RequestSpec(models[0], "Say hello.", False, 4), 60)
    final_gauges, _, _ = await _quiet(base_url, replicas, 30)
    stats_after_probe = await cluster.engine_stats()
    storm = first + second
    everything = warm + storm + mid_probe + early_probe + [probe]
    started = [o for o in everything if o.status == 200]
    abandoned = [o for o in everything if o.error == "abandoned"]
    ledger, waited = await asyncio.to_thread(settle, target.redis.url, prefix, before, len(started), 30.0)
    report.seconds = time.monotonic() - began
    report.outcomes = everything

    hung_up = [o for o in storm if o.extra.get("hung_up")]
    mid_stream = [o for o in hung_up if o.status == 200 and not o.extra.get("finished_before_hang_up")]
    slow = [o for o in storm if "lines" in o.extra]
    early = [o for o in storm if "hung_up" not in o.extra and "lines" not in o.extra]
    report.rows += outcome_rows(warm, "warm-up: ")
    report.add("hang-ups sent / got 200 / hung up mid-stream", f"{len(hung_up)} / {_n200(hung_up)} / {len(mid_stream)}")
    report.add("hang-ups not started (status)", format_counts(Counter(o.label for o in hung_up if o.status != 200)))
    report.add("hang-ups: chunks read before hanging up", format_counts(Counter(str(o.chunks) for o in mid_stream)))
    for model in sorted({o.model for o in mid_stream}):
        firsts = [o.first_chunk - o.started for o in mid_stream if o.model == model and o.first_chunk]
        report.add(f"hang-ups for {model}: count / time to first chunk, ms", f"{len(firsts)} / {_ms(firsts)}")
    report.add("slow readers: complete / sent", f"{sum(o.ok for o in slow)} / {len(slow)}")
    report.add(
        "early give-ups: abandoned before the response / sent",
        f"{sum(o.error == 'abandoned' for o in early)} / {len(early)}",
    )
    report.add("open requests by ingress replica after the storm", _fmt(gauges))
    report.add("quiet (open requests 0, engine idle) after the storm", f"{quiet_s:.1f} s")
    report.add("vLLM engine after the storm", _fmt(stats))
    report.add(
        f"probe: {probe_streams} x 256-token streams hung up after 1 chunk: engine idle after",
        f"{mid_idle_s:.1f} s (200: {_n200(mid_probe)})",
    )
    report.add(
        f"probe: {probe_streams} x 256-token streams dropped after 50 ms: engine idle after",
        f"{early_idle_s:.1f} s (abandoned before the response: {sum(o.error == 'abandoned' for o in early_probe)})",
    )
    report.add("open requests by ingress replica at the end", _fmt(final_gauges))
    report.add("vLLM engine at the end (after one more request)", _fmt(stats_after_probe))
    for name in sorted(rss_second):
        report.add(
            f"RSS MiB {name}: warm / round 1 / round 2",
            f"{_mib(rss_warm.get(name))} / {_mib(rss_first.get(name))} / {_mib(rss_second[name])}",
        )
    report.add("responses started (200) / ledger requests", f"{len(started)} / {ledger.requests}")
    report.add("ledger settled after", f"{waited:.1f} s")

    report.check(
        "open-request gauge back to 0 on every ingress replica",
        len(final_gauges) >= replicas and not any(final_gauges.values()) and not any(gauges.values()),
        f"after the storm {_fmt(gauges)}; at the end {_fmt(final_gauges)}",
    )
    engine_idle = not stats.get("in_flight") and not stats.get("unfinished")
    engine_idle = engine_idle and not stats_after_probe.get("running") and not stats_after_probe.get("waiting")
    engine_idle = engine_idle and not stats_after_probe.get("in_flight") and not stats_after_probe.get("unfinished")
    report.check(
        "vLLM engine: nothing in flight, unfinished, running or waiting",
        engine_idle,
        f"after the storm {_fmt(stats)}; at the end {_fmt(stats_after_probe)}",
    )
    report.check(
        "a hang-up cancels its generation (engine idle within 5 s of the last client leaving)",
        mid_idle_s <= 5 and early_idle_s <= 5,
        f"mid-stream {mid_idle_s:.1f} s, before the first byte {early_idle_s:.1f} s",
    )
    growth = {n: rss_second[n] - rss_first[n] for n in rss_second if n in rss_first}
    report.check(
        f"RSS growth from round 1 to round 2 at most {rss_bound_mib:g} MiB per replica",
        bool(growth) and all(g <= rss_bound_mib * _MIB for g in growth.values()),
        ", ".join(f"{n}: {g / _MIB:+.1f} MiB" for n, g in sorted(growth.items())),
    )
    report.check(
        "a ledger entry for every started response (settled on disconnect)",
        len(started) <= ledger.requests <= len(started) + len(abandoned),
        f"started {len(started)}, ledger {ledger.requests} (up to +{len(abandoned)} allowed: requests abandoned "
        "before the response that the gateway had already begun to answer)",
    )
    report.check(
        "slow readers get their whole stream",
        bool(slow) and all(o.ok for o in slow),
        format_counts(Counter(o.label for o in slow)),
    )
    report.check("the gateway serves normally afterwards", probe.ok, probe.label)
    return report


def _n200(outcomes: list[Outcome]) -> int:
    return sum(1 for o in outcomes if o.status == 200)


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"p50 {ordered[len(ordered) // 2] * 1000:.0f} / max {ordered[-1] * 1000:.0f}"


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / _MIB:.0f}"


def _fmt(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(values.items())) or "-"


if __name__ == "__main__":
    sys.exit(main(NAME, run, add_arguments, description=__doc__ or NAME))
