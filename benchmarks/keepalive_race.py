"""How often a hosted tier's pooled connection loses the keep-alive race, and what the client sees.

A uvicorn server (the fake OpenAI upstream here; vLLM's and the stand-in's servers alike)
closes a keep-alive connection after 5 s idle. Each round makes one call, waits just under or
over 5 s, and makes another on the pooled connection, through the hosted engine with
``num_retries: 0``. It prints, per transport, how many second calls failed (the client's 502)
and how many dropped connections the engine redialled. ``--no-redial`` replays the behaviour
before redials existed (every connection error counts as the upstream's failure), for comparison.

    .venv/bin/python -m benchmarks.keepalive_race [--rounds 30] [--idle 4.95] [--no-redial]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import time

from deployments import upstream_retries
from deployments.hosted_engine import build_hosted_engine
from gateway.config import LiteLLMTierConfig
from gateway.engine import GenerationRequest
from gateway.errors import GatewayError
from tests.fakes.openai_upstream import FakeOpenAIUpstream, UpstreamBehaviour


async def _rounds(transport: str, rounds: int, idle_s: float) -> int:
    upstream = FakeOpenAIUpstream(UpstreamBehaviour(model="fake-large", latency_s=0.02)).start()
    tier = LiteLLMTierConfig(
        transport=transport,
        served_model_name="fake-large",
        model="openai/fake-large",
        api_base=upstream.base_url,
        api_key_env=None,
        timeout_s=5,
        num_retries=0,
    )
    engine = build_hosted_engine(tier)
    await engine.start()
    request = GenerationRequest("race", [{"role": "user", "content": "ping"}], max_tokens=4)
    failures = 0
    try:
        for i in range(rounds):
            await engine.complete(request)
            # A spread of 80 ms around the idle time: the race is lost within a few ms of 5 s.
            await asyncio.sleep(idle_s + (i % 5) * 0.02)
            try:
                await engine.complete(request)
            except GatewayError:
                failures += 1
    finally:
        await engine.shutdown()
        upstream.stop()
    return failures


class _DropCounter:
    """Stands in for :func:`upstream_retries.dropped_connection`, counting the drops it sees."""

    def __init__(self, redial: bool) -> None:
        self.redial = redial
        self.drops = 0
        self._classify = upstream_retries.dropped_connection

    def __call__(self, exc: BaseException) -> bool:
        dropped = self._classify(exc)
        self.drops += dropped
        return dropped and self.redial


async def _main(rounds: int, idle_s: float, redial: bool) -> None:
    print(f"machine: {platform.machine()}, {platform.processor() or platform.platform()}")
    print(f"{rounds} rounds per transport, idle {idle_s:.2f}-{idle_s + 0.08:.2f} s, num_retries 0, redial {redial}\n")
    print("| transport | redial | second calls failed | dropped connections seen | seconds |")
    print("|---|---|---|---|---|")
    for transport in ("litellm", "openai"):
        counter = _DropCounter(redial)
        # call_with_retries looks the classifier up at call time, so the counter sees every failure.
        upstream_retries.dropped_connection = counter
        started = time.monotonic()
        failures = await _rounds(transport, rounds, idle_s)
        seconds = time.monotonic() - started
        print(f"| {transport} | {'yes' if redial else 'no'} | {failures}/{rounds} | {counter.drops} | {seconds:.0f} |")


def main() -> None:
    """Parse the options and run both transports."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--idle", type=float, default=4.95, help="seconds between the two calls of a round")
    parser.add_argument("--no-redial", dest="redial", action="store_false", help="the behaviour before redials")
    args = parser.parse_args()
    asyncio.run(_main(args.rounds, args.idle, args.redial))


if __name__ == "__main__":
    main()
