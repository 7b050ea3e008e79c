"""One replica's services in process over a throwaway redis-server, for the benchmarks that
measure the gateway's own logic (no HTTP, no Ray, engines that answer from a script)."""

from __future__ import annotations

import asyncio
import os
import platform
import tempfile
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway.config import GatewayConfig
from gateway.redis_server import EmbeddedRedis
from gateway.serving.tiers import Tier
from tests.fakes.engines import ScriptedEngine
from tests.fakes.openai_upstream import hosted_tier_settings

__all__ = ["bench_config", "bench_tiers", "int_list", "machine", "run_with_redis", "throwaway_redis"]

os.environ.setdefault("SLM_TEST_UPSTREAM_KEY", "sk-test-not-a-secret")


def bench_config(redis_url: str) -> GatewayConfig:
    """Two tiers (the large one is never asked), Redis, no router, no authentication."""
    return GatewayConfig.model_validate(
        {
            "redis": {"url": redis_url},
            "routing": {"router_artifact": None},
            "tiers": {
                "small": {"kind": "vllm", "served_model_name": "small-model", "default_max_tokens": 16},
                "large": hosted_tier_settings("http://127.0.0.1:9"),
            },
            "accounting": {
                "prices": {
                    "small": {"kind": "per_million", "input_usd_per_million": 0.1, "output_usd_per_million": 0.3},
                    "large": {"kind": "per_million", "input_usd_per_million": 2.5, "output_usd_per_million": 10},
                }
            },
            "state": {"auth": {"enabled": False}},
        }
    )


def bench_tiers(engine: ScriptedEngine) -> list[Tier]:
    """``engine`` as the small tier, a scripted large tier beside it."""
    return [
        Tier("small", "small-model", engine, 16, 5),
        Tier("large", "fake-large", ScriptedEngine(model="fake-large"), 64, 5),
    ]


@contextmanager
def throwaway_redis() -> Iterator[str]:
    """The URL of a redis-server that lives as long as the block (nothing persisted)."""
    with tempfile.TemporaryDirectory() as state:
        redis = EmbeddedRedis(Path(state), persist=False)
        redis.start()
        try:
            yield redis.url
        finally:
            redis.stop()


def int_list(text: str) -> list[int]:
    """``--concurrency 1,32``-style argument values."""
    return [int(part) for part in text.split(",")]


def machine() -> str:
    """The line that says where the figures were measured."""
    return f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.platform()}"


def run_with_redis(run: Callable[[str], Coroutine[Any, Any, None]]) -> None:
    """Print where the figures are measured, then ``run(redis_url)`` over a throwaway redis-server."""
    print(machine())
    with throwaway_redis() as url:
        asyncio.run(run(url))
