"""Gateway overhead: our gateway against LiteLLM's proxy over the same fixed-latency upstream.

Side by side on one machine, each system in its own processes, one at a time:

* ``direct``: the upstream itself (the floor);
* ``slm-router (litellm)``: our gateway, large tier through ``litellm.acompletion``;
* ``slm-router (openai)``: our gateway, large tier through the pooled OpenAI-protocol client;
* ``litellm-proxy``: LiteLLM's proxy 1.108.0 (its own venv), 1 and 2 workers.

For each system and concurrency (closed loop, aiohttp on uvloop) it prints throughput and
p50/p99, and the latency each adds over ``direct`` at the same concurrency. Usage::

    .venv/bin/python -m benchmarks.gateway_overhead                 # full run (~10 min on 2 cores)
    .venv/bin/python -m benchmarks.gateway_overhead --duration 5 --systems direct,ours-openai
    .venv/bin/python -m benchmarks.gateway_overhead --api responses --systems ours-openai-ha

``--api responses`` sends the same request to our ``/v1/responses`` (stored in Redis, as by
default) instead of ``/v1/chat/completions``, ``--api responses-unstored`` with ``store: false``;
only our gateway systems take them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.loadgen import LoadResult, run_load
from benchmarks.stacks import (
    ManagedProcess,
    gateway_process,
    litellm_proxy_process,
    repo_root,
    upstream_process,
)

MODEL = "fake-large"
BODY: dict[str, Any] = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Say hello to the benchmark, briefly."}],
    "max_tokens": 16,
}
#: The same request as a Responses API body.
RESPONSES_BODY: dict[str, Any] = {
    "model": MODEL,
    "input": "Say hello to the benchmark, briefly.",
    "max_output_tokens": 16,
}
#: Path and body per ``--api``.
APIS: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": ("/v1/chat/completions", BODY),
    "responses": ("/v1/responses", RESPONSES_BODY),
    "responses-unstored": ("/v1/responses", {**RESPONSES_BODY, "store": False}),
}


def _large_tier(upstream_url: str, transport: str) -> dict[str, Any]:
    return {
        "large": {
            "kind": "litellm",
            "transport": transport,
            "served_model_name": MODEL,
            "model": f"openai/{MODEL}",
            "api_base": upstream_url,
            "api_key_env": None,
            "num_retries": 0,
            "timeout_s": 30,
        }
    }


def _ours(upstream_url: str, transport: str, ha_proxy: bool, replicas: int) -> ManagedProcess:
    return gateway_process(
        _large_tier(upstream_url, transport),
        name=f"slm-router ({transport}, ha_proxy={ha_proxy}, replicas={replicas})",
        routing={"default_tier": "large", "router_artifact": None},
        ingress={"num_replicas": replicas},
        env={"RAY_SERVE_ENABLE_HA_PROXY": "1" if ha_proxy else "0"},
    )


def systems(upstream_url: str) -> dict[str, Callable[[], ManagedProcess | None]]:
    """Every comparable system by short name (``None``: the upstream itself)."""
    return {
        "direct": lambda: None,
        "ours-litellm": lambda: _ours(upstream_url, "litellm", ha_proxy=False, replicas=1),
        "ours-openai": lambda: _ours(upstream_url, "openai", ha_proxy=False, replicas=1),
        "ours-openai-ha": lambda: _ours(upstream_url, "openai", ha_proxy=True, replicas=1),
        "ours-openai-ha-2r": lambda: _ours(upstream_url, "openai", ha_proxy=True, replicas=2),
        "ours-litellm-ha-2r": lambda: _ours(upstream_url, "litellm", ha_proxy=True, replicas=2),
        "litellm-proxy-1w": lambda: litellm_proxy_process(upstream_url, MODEL, workers=1),
        "litellm-proxy-2w": lambda: litellm_proxy_process(upstream_url, MODEL, workers=2),
    }


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} cores, {cpu}, {system}, Python {platform.python_version()}"


def _table(rows: list[dict[str, Any]]) -> str:
    head = "| system | concurrency | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | errors |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(
            f"| {row['system']} | {row['concurrency']} | {row['throughput_rps']:.0f} | {row['p50_ms']:.1f} "
            f"| {row['p99_ms']:.1f} | {row.get('added_p50_ms', 0):.1f} | {row.get('added_p99_ms', 0):.1f} "
            f"| {sum(row['errors'].values())} |"
        )
    return "\n".join(lines)


def _max_table(rows: list[dict[str, Any]]) -> str:
    best: dict[str, float] = {}
    for row in rows:
        best[row["system"]] = max(best.get(row["system"], 0.0), row["throughput_rps"])
    lines = ["| system | max req/s |", "|---|---:|"]
    lines += [f"| {name} | {rps:.0f} |" for name, rps in best.items()]
    return "\n".join(lines)


async def _measure(
    name: str, url: str, body: dict[str, Any], headers: dict[str, str], levels: list[int], duration: float
) -> list[dict[str, Any]]:
    rows = []
    for concurrency in levels:
        result: LoadResult = await run_load(
            url, body, concurrency=concurrency, duration_s=duration, warmup_s=2.0, headers=headers
        )
        row = {"system": name, **result.summary()}
        rows.append(row)
        print(f"  {name} c={concurrency}: {json.dumps(result.summary())}", flush=True)
    return rows


def main() -> None:
    """Run the comparison and print Markdown tables (and write them as JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", default="1,32,128")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per level")
    parser.add_argument(
        "--systems",
        default="direct,ours-litellm,ours-openai,ours-openai-ha,ours-openai-ha-2r,litellm-proxy-1w,litellm-proxy-2w",
    )
    parser.add_argument("--api", choices=sorted(APIS), default="chat", help="the endpoint our gateway is driven at")
    parser.add_argument("--json", type=Path, default=None, help="write every row here")
    args = parser.parse_args()
    path, body = APIS[args.api]
    if args.api != "chat" and any(not name.startswith("ours") for name in args.systems.split(",")):
        parser.error(f"--api {args.api} drives our gateway only: pick ours-* systems")
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    levels = [int(c) for c in args.concurrency.split(",")]
    upstream = upstream_process(args.latency_ms).start()
    rows: list[dict[str, Any]] = []
    startup: dict[str, float] = {}
    try:
        catalogue = systems(upstream.base_url)
        for name in args.systems.split(","):
            system = catalogue[name]()
            print(f"{name}: starting", flush=True)
            headers: dict[str, str] = {}
            if system is None:
                url = f"{upstream.base_url}/chat/completions"
            else:
                system.start()
                startup[name] = round(system.started_s, 1)
                url = f"{system.base_url}{path}"
                if name.startswith("litellm-proxy"):
                    headers = {"Authorization": "Bearer sk-bench-master-key"}
            try:
                rows += asyncio.run(
                    _measure(name, url, body if system is not None else BODY, headers, levels, args.duration)
                )
            finally:
                if system is not None:
                    system.stop()
                    if name.startswith("ours"):
                        # Ray's workers outlive a killed driver now and then; the next system needs the cores.
                        subprocess.run(
                            [str(repo_root() / ".venv/bin/ray"), "stop", "--force"], capture_output=True, check=False
                        )
                        time.sleep(2)
    finally:
        upstream.stop(grace_s=5)
    floor = {row["concurrency"]: row for row in rows if row["system"] == "direct"}
    for row in rows:
        base = floor.get(row["concurrency"])
        if base is not None:
            row["added_p50_ms"] = row["p50_ms"] - base["p50_ms"]
            row["added_p99_ms"] = row["p99_ms"] - base["p99_ms"]
    print(
        f"\nMachine: {_machine()}; upstream latency {args.latency_ms:.0f} ms; {args.duration:.0f} s per level; "
        f"API {path}"
    )
    print(_table(rows))
    print()
    print(_max_table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": _machine(), "rows": rows, "startup_s": startup}, indent=2))


if __name__ == "__main__":
    main()
