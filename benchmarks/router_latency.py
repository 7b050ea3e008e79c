"""Router decision latency under concurrency, as a serving replica would see it.

32 asyncio tasks (the concurrent requests) each await ``loop.run_in_executor(pool, router.score,
conversation)`` in a closed loop, which is how the gateway calls the synchronous router from its
event loop. Two figures per router:

* ``e2e``: from the request's point of view (queueing for a pool thread + scoring);
* ``service``: time spent inside ``score`` on the worker thread.

Usage::

    python benchmarks/router_latency.py                      # the default artifact
    python benchmarks/router_latency.py --artifact DIR ...   # several artifacts
    python benchmarks/router_latency.py --requests 2000 --concurrency 32 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from router_models import ChatTurn, Router, default_artifact_path, load_router

#: Chat-style requests (short and long, single and multi-turn) so figures reflect gateway traffic
#: rather than only benchmark questions.
CHAT_PROMPTS: tuple[tuple[ChatTurn, ...], ...] = (
    (ChatTurn("user", "hi! how are you today?"),),
    (ChatTurn("user", "Translate 'good morning, see you tomorrow' into French."),),
    (ChatTurn("user", "Write a haiku about autumn leaves."),),
    (ChatTurn("user", "What is the capital of Australia?"),),
    (
        ChatTurn("system", "You are a helpful assistant."),
        ChatTurn("user", "Summarise the plot of Hamlet in three sentences."),
    ),
    (
        ChatTurn(
            "user",
            "Prove that there are infinitely many primes, then generalise the argument to primes of the form 4k+3.",
        ),
    ),
    (
        ChatTurn(
            "user",
            "Write a Python function that parses an ISO-8601 duration string like P3DT4H12M "
            "and returns seconds. Include tests.",
        ),
    ),
    (
        ChatTurn("system", "You are a senior SRE."),
        ChatTurn("user", "Our p99 latency doubled after a deploy. Where do I start?"),
        ChatTurn(
            "assistant",
            "Check the deploy diff, compare flame graphs before/after, and look at GC pauses "
            "and connection pool saturation.",
        ),
        ChatTurn(
            "user",
            "GC pauses went from 5 ms to 60 ms and heap usage is flat. The JVM flags did not "
            "change. What could cause this and how do I confirm it?",
        ),
    ),
    (
        ChatTurn(
            "user",
            "A train leaves at 3:40 pm travelling 84 km/h; a second leaves the same station at "
            "4:10 pm at 105 km/h on a parallel track. When and where does the second catch up?",
        ),
    ),
    (
        ChatTurn(
            "user",
            " ".join(
                ["Here is a long document to review for inconsistencies."]
                + ["The committee met on Tuesday and approved the budget with amendments to section 4."] * 40
            ),
        ),
    ),
)


def _data_prompts(limit: int) -> list[tuple[ChatTurn, ...]]:
    from router_models.data import load_dataset
    from router_models.errors import RouterDataError

    try:
        out: list[tuple[ChatTurn, ...]] = []
        for name in ("mmlu", "gsm8k"):
            d = load_dataset(name)
            rng = random.Random(0)
            out += [(ChatTurn("user", p),) for p in rng.sample(d.prompts, min(limit, len(d)))]
        return out
    except RouterDataError:  # data are optional for the benchmark
        return []


async def _bench(
    router: Router, convs: Sequence[tuple[ChatTurn, ...]], requests: int, concurrency: int, workers: int
) -> tuple[list[float], list[float], float]:
    loop = asyncio.get_running_loop()
    e2e: list[float] = []
    service: list[float] = []
    counter = iter(range(requests))

    def timed_score(conv: Sequence[ChatTurn]) -> float:
        t0 = time.perf_counter()
        router.score(conv)
        return time.perf_counter() - t0

    with ThreadPoolExecutor(max_workers=workers) as pool:

        async def client(cid: int) -> None:
            for i in counter:
                conv = convs[(i * 7 + cid) % len(convs)]
                t0 = time.perf_counter()
                s = await loop.run_in_executor(pool, timed_score, conv)
                e2e.append(time.perf_counter() - t0)
                service.append(s)

        t0 = time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(concurrency)))
        wall = time.perf_counter() - t0
    return e2e, service, wall


def _pct(xs: list[float], q: float) -> float:
    return 1000 * statistics.quantiles(xs, n=1000, method="inclusive")[int(q * 1000) - 1]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--artifact", action="append", default=None, help="artifact dir (repeatable; default: packaged default)"
    )
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=32)
    # One worker suits the GIL-bound lexical router; ONNX releases the GIL, so embedding routers
    # gain from one worker per core. Both are reported in docs/routers.md.
    ap.add_argument("--workers", type=int, default=1, help="thread-pool size")
    ap.add_argument("--data-prompts", type=int, default=50, help="benchmark prompts per data set mixed in")
    args = ap.parse_args(argv)
    convs = list(CHAT_PROMPTS) + _data_prompts(args.data_prompts)
    print(
        f"{len(convs)} distinct conversations, {args.requests} requests, concurrency {args.concurrency}, "
        f"{args.workers} worker threads, {os.cpu_count()} CPUs"
    )
    print(f"{'router [encoder profile]':<26} {'e2e p50':>9} {'e2e p99':>9} {'svc p50':>9} {'svc p99':>9} {'req/s':>8}")
    for path in args.artifact or [str(default_artifact_path())]:
        router = load_router(path)
        for c in convs[: min(len(convs), 20)]:  # warm-up: lazy model load, ONNX export, caches
            router.score(c)
        e2e, svc, wall = asyncio.run(_bench(router, convs, args.requests, args.concurrency, args.workers))
        profile = router.metadata.get("trained_on", {}).get("encoder_profile")
        label = f"{router.name} [{profile}]" if profile else router.name
        print(
            f"{label:<26} {_pct(e2e, 0.5):>7.2f}ms {_pct(e2e, 0.99):>7.2f}ms {_pct(svc, 0.5):>7.2f}ms "
            f"{_pct(svc, 0.99):>7.2f}ms {len(e2e) / wall:>8.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
