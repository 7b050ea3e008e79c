"""What a conversation costs a response: reading its items as history and adding the turn.

A response created with ``conversation`` reads every item of the conversation from Redis,
turns them into chat messages and, once answered, appends its input and output items (one Lua
script). This benchmark serves the same one-line ``/v1/responses`` request in process (one
replica's services, a real redis-server, an engine that answers at once, no HTTP) on its own
and in conversations already holding N items, and prints the gateway's time per response.

    .venv/bin/python -m benchmarks.conversation_cost [--items 0,10,100,1000] [--requests 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from benchmarks.inprocess import bench_config, bench_tiers, int_list, run_with_redis
from gateway.serving.assembly import build_replica_services
from tests.fakes.engines import ScriptedEngine


def _turns(start: int, stop: int) -> list[dict[str, str]]:
    return [{"type": "message", "role": "user", "content": f"turn {n} " * 8} for n in range(start, stop)]


async def _run(args: argparse.Namespace, redis_url: str) -> None:
    services = await build_replica_services(
        bench_config(redis_url), bench_tiers(ScriptedEngine(model="small-model")), environ={}
    )
    responses, conversations = services.responses, services.conversations
    try:
        print(f"{args.requests} responses each, one at a time")
        print(f"{'items':>6} {'p50':>9} {'p95':>9} {'over none':>10}")
        baseline = None
        for count in args.items:
            body: dict[str, object] = {"model": "small-model", "input": "hi", "store": False}
            if count:
                conversation = await conversations.create(json.dumps({"items": _turns(0, min(count, 20))}).encode(), {})
                for start in range(20, count, 20):
                    more = json.dumps({"items": _turns(start, min(count, start + 20))}).encode()
                    await conversations.add_items(conversation["id"], more, {})
                body["conversation"] = conversation["id"]
            times = []
            for _ in range(args.requests):
                started = time.perf_counter()
                await responses.create(json.dumps(body).encode(), {})
                times.append(1000 * (time.perf_counter() - started))
                if count:
                    # Keep the conversation at its size (N items, not N plus the turns added).
                    added = await conversations.list_items(conversation["id"], {}, {"limit": "2"})
                    for item in added["data"]:
                        await conversations.delete_item(conversation["id"], item["id"], {})
            p50 = statistics.median(times)
            p95 = sorted(times)[round(0.95 * (len(times) - 1))]
            baseline = p50 if baseline is None else baseline
            print(f"{count:>6} {p50:>7.2f}ms {p95:>7.2f}ms {p50 - baseline:>+8.2f}ms")
    finally:
        await services.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int_list, default=[0, 10, 100, 1000])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    run_with_redis(lambda url: _run(args, url))


if __name__ == "__main__":
    main()
