"""What streaming a response through its Redis event log costs, against a direct stream.

A streamed background response (``background`` and ``stream``) reaches its reader through
Redis (the run writes each event to the response's log; the reader tails it), so that a
client can leave and resume, on any replica. A foreground stream goes straight from the
engine to the client. This benchmark serves the same streamed ``/v1/responses`` request both
ways, in process (one replica's services, no HTTP, a real redis-server), with an engine that
writes the time into each token, and prints per mode and concurrency: the time to the first
text delta, the lag of every delta (received minus produced) and the time to the last event.
Modes: ``foreground``; ``background`` (the creator follows the run in memory);
``resumed-here`` and ``resumed-other`` (the creator leaves after the first event and reads on
with ``GET ...?stream=true&starting_after=0``, on the replica running the response, which
follows it in memory, or on a second replica, which reads the Redis log).

    .venv/bin/python -m benchmarks.background_stream_lag [--tokens 64] [--token-ms 10] [--concurrency 1,32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator

from benchmarks.inprocess import bench_config, bench_tiers, int_list, run_with_redis
from gateway.engine import EngineDelta, GenerationRequest
from gateway.serving.assembly import build_replica_services
from gateway.serving.responses_endpoint import ResponsesEndpoint
from gateway.serving.responses_results import ResponsesStream
from tests.fakes.engines import ScriptedEngine


class ClockEngine(ScriptedEngine):
    """Streams ``tokens`` pieces ``token_s`` apart, each the time it was made."""

    def __init__(self, tokens: int, token_s: float) -> None:
        super().__init__(model="small-model")
        self.tokens = tokens
        self.token_s = token_s

    async def stream(self, request: GenerationRequest) -> AsyncIterator[EngineDelta]:
        # On a fixed schedule, as an engine that generates on its own (vLLM, a hosted model)
        # does: a slow reader gets the tokens late, it does not slow their production.
        start = time.perf_counter()
        for index in range(1, self.tokens + 1):
            await asyncio.sleep(max(0.0, start + index * self.token_s - time.perf_counter()))
            finish = "stop" if index == self.tokens else None
            yield EngineDelta(f"{time.perf_counter():.6f};", finish, 5, index, self.model)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def _one(responses: ResponsesEndpoint, other: ResponsesEndpoint, mode: str) -> tuple[float, list[float], float]:
    background = mode != "foreground"
    body = {"model": "small-model", "input": "go", "stream": True, "background": background, "store": background}
    started = time.perf_counter()
    result = await responses.create(json.dumps(body).encode(), {})
    assert isinstance(result, ResponsesStream)
    if mode.startswith("resumed"):
        # The creator leaves after the first event and reads on, as a client that reconnects does.
        first_frame = await anext(result.events)
        await result.events.aclose()  # type: ignore[attr-defined]
        response_id = json.loads(first_frame.decode().split("data: ", 1)[1])["response"]["id"]
        reader = responses if mode == "resumed-here" else other
        resumed = await reader.retrieve(response_id, {}, {"stream": "true", "starting_after": "0"})
        assert isinstance(resumed, ResponsesStream)
        result = resumed
    first = 0.0
    lags: list[float] = []
    async for frame in result.events:
        now = time.perf_counter()
        for line in frame.decode().splitlines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            if event["type"] == "response.output_text.delta":
                first = first or now - started
                lags.append(now - float(event["delta"].rstrip(";")))
    return first, lags, time.perf_counter() - started


async def _measure(
    responses: ResponsesEndpoint, other: ResponsesEndpoint, mode: str, concurrency: int, requests: int
) -> tuple[list[float], list[float], list[float]]:
    firsts: list[float] = []
    lags: list[float] = []
    ends: list[float] = []

    async def client() -> None:
        for _ in range(requests):
            first, lag, end = await _one(responses, other, mode)
            firsts.append(first)
            lags.extend(lag)
            ends.append(end)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return firsts, lags, ends


async def _run(args: argparse.Namespace, redis_url: str) -> None:
    config = bench_config(redis_url)
    engine = ClockEngine(args.tokens, args.token_ms / 1000)
    services = await build_replica_services(config, bench_tiers(engine), environ={})
    second = await build_replica_services(config, bench_tiers(engine), environ={})
    responses, other = services.responses, second.responses
    try:
        print(f"{args.tokens} tokens, {args.token_ms} ms apart; {args.requests} requests per client")
        columns = ("first p50", "first p99", "lag p50", "lag p99", "end p50")
        print(f"{'mode':<14} {'clients':>7} " + " ".join(f"{c:>10}" for c in columns))
        for concurrency in args.concurrency:
            for mode in ("foreground", "background", "resumed-here", "resumed-other"):
                firsts, lags, ends = await _measure(responses, other, mode, concurrency, args.requests)
                ms = [1000 * v for v in (_percentile(firsts, 0.5), _percentile(firsts, 0.99))]
                lag_ms = [1000 * v for v in (_percentile(lags, 0.5), _percentile(lags, 0.99))]
                print(
                    f"{mode:<14} {concurrency:>7} {ms[0]:>8.1f}ms {ms[1]:>8.1f}ms "
                    f"{lag_ms[0]:>8.2f}ms {lag_ms[1]:>8.2f}ms {1000 * _percentile(ends, 0.5):>8.0f}ms"
                )
    finally:
        await services.close()
        await second.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--token-ms", type=float, default=10.0)
    parser.add_argument("--requests", type=int, default=5, help="requests per client")
    parser.add_argument("--concurrency", type=int_list, default=[1, 32])
    args = parser.parse_args()
    run_with_redis(lambda url: _run(args, url))


if __name__ == "__main__":
    main()
