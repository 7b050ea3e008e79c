"""Serving efficiency: the small model's tokens per second through the gateway vs bare vLLM.

Same model, same engine settings, same prompts, same batch (``--concurrency`` requests in
flight), greedy decoding:

1. **bare**: vLLM's ``AsyncLLM`` in this process, prompts built with the model's chat
   template, ``--requests`` generations driven ``--concurrency`` at a time;
2. **gateway**: ``LocalGateway`` (Redis, Ray Serve, the ingress and the small-model
   deployment) with the same tier config, the same requests sent over HTTP
   (aiohttp, ``model=<small served name>``, non-stream and stream alternating).

Tokens per second = completion tokens (as each side reports them) / wall time of the
measured pass. The two runs never overlap: only one engine holds the cores at a time.

    .venv/bin/python -m benchmarks.serving_efficiency              # ~4 min on 2 cores
    .venv/bin/python -m benchmarks.serving_efficiency --requests 96 --concurrency 32 --max-tokens 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.stacks import free_port
from gateway.config import GatewayConfig, VLLMTierConfig, load_config
from gateway.local_models import resolve_model_path

PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a refrigerator works to a ten-year-old.",
    "Describe a walk through a busy market in the morning.",
    "Write a letter to a friend about your summer holiday.",
    "List some tips for staying productive while working from home, and explain each one.",
    "Tell me about the history of the bicycle.",
    "Describe your ideal weekend in detail.",
    "Write a poem about the sea and the wind.",
]


def _small_tier(config: GatewayConfig) -> VLLMTierConfig:
    tier = config.tiers["small"]
    assert isinstance(tier, VLLMTierConfig)
    return tier


async def _bare(config: GatewayConfig, requests: int, concurrency: int, max_tokens: int) -> dict[str, Any]:
    from vllm import SamplingParams
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM

    tier = _small_tier(config)
    args = AsyncEngineArgs(
        model=str(resolve_model_path(tier.model)),
        served_model_name=tier.served_model_name,
        max_model_len=tier.max_model_len,
        dtype=tier.dtype,
        gpu_memory_utilization=tier.gpu_memory_utilization,
        max_num_seqs=tier.max_num_seqs,
        enforce_eager=tier.enforce_eager,
        **tier.engine_kwargs,
    )
    engine = AsyncLLM.from_engine_args(args)
    tokenizer = engine.get_tokenizer()
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0)

    async def one(i: int) -> int:
        messages = [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]
        ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        final = None
        async for output in engine.generate({"prompt_token_ids": list(ids)}, params, uuid.uuid4().hex):
            final = output
        assert final is not None
        return len(final.outputs[0].token_ids)

    try:
        await _drive(one, min(concurrency, 4), concurrency)  # warm-up
        return await _timed(one, requests, concurrency)
    finally:
        engine.shutdown()


async def _gateway(config: GatewayConfig, requests: int, concurrency: int, max_tokens: int) -> dict[str, Any]:
    from deployments.runtime import LocalGateway

    tier = _small_tier(config)
    gateway = LocalGateway(config).start()
    url = f"{gateway.base_url}/v1/chat/completions"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:

            async def one(i: int) -> int:
                body = {
                    "model": tier.served_model_name,
                    "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                    "max_tokens": max_tokens,
                    "temperature": 0.0,
                    "stream": i % 2 == 1,
                    "stream_options": {"include_usage": True},
                }
                async with session.post(url, json=body) as response:
                    raw = await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"gateway answered {response.status}: {raw[:300]!r}")
                if not body["stream"]:
                    return int(json.loads(raw)["usage"]["completion_tokens"])
                frames = [line[6:] for line in raw.decode().splitlines() if line.startswith("data: {")]
                usage = [json.loads(frame).get("usage") for frame in frames]
                return int(next(u for u in reversed(usage) if u)["completion_tokens"])

            await _drive(one, min(concurrency, 4), concurrency)
            return await _timed(one, requests, concurrency)
    finally:
        gateway.stop()


async def _drive(one: Any, requests: int, concurrency: int) -> list[int]:
    queue = iter(range(requests))
    tokens: list[int] = []

    async def worker() -> None:
        for i in queue:
            tokens.append(await one(i))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tokens


async def _timed(one: Any, requests: int, concurrency: int) -> dict[str, Any]:
    started = time.perf_counter()
    tokens = await _drive(one, requests, concurrency)
    seconds = time.perf_counter() - started
    total = sum(tokens)
    return {"requests": len(tokens), "completion_tokens": total, "seconds": round(seconds, 2), "tok_s": total / seconds}


def main() -> None:
    """Measure both, print a table and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    base = load_config(None, environ={})
    data = base.model_dump(mode="json")
    data["server"]["port"] = free_port()
    data["redis"]["state_dir"] = f"/tmp/slm-bench-eff-{os.getpid()}"
    # Only the small tier: what is measured is the path to vLLM, not routing.
    data["tiers"] = {"small": data["tiers"]["small"]}
    data["routing"] = {**data["routing"], "router_artifact": None, "default_tier": "small"}
    data["accounting"]["prices"] = {"small": data["accounting"]["prices"]["small"]}
    config = GatewayConfig.model_validate(data)
    bare = asyncio.run(_bare(config, args.requests, args.concurrency, args.max_tokens))
    print(f"bare vLLM: {json.dumps(bare)}", flush=True)
    through = asyncio.run(_gateway(config, args.requests, args.concurrency, args.max_tokens))
    print(f"gateway:   {json.dumps(through)}", flush=True)
    ratio = through["tok_s"] / bare["tok_s"]
    print(
        f"\n| path | requests | completion tokens | seconds | tokens/s |\n|---|---:|---:|---:|---:|\n"
        f"| bare vLLM AsyncLLM | {bare['requests']} | {bare['completion_tokens']} | {bare['seconds']} "
        f"| {bare['tok_s']:.1f} |\n"
        f"| through slm-router | {through['requests']} | {through['completion_tokens']} | {through['seconds']} "
        f"| {through['tok_s']:.1f} |\n\nratio (gateway / bare): {ratio:.3f}  "
        f"(batch {args.concurrency}, max_tokens {args.max_tokens}, greedy)"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"bare": bare, "gateway": through, "ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()
