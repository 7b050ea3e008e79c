"""What ``n`` choices cost on the small tier (the vLLM engine, as the gateway runs it).

A client that wants k answers to one prompt can ask for ``n: k`` or send k requests. On the
vLLM engine, ``n`` samples the choices in parallel from one prompt (prefilled once); k
requests prefill it k times, whether sent one after another or at once. For each prompt this
runs, in turn: one choice; ``n: k`` in one request; k requests at once; k requests one after
another (sampling at temperature 1 with a seed, so the choices differ). It prints per mode
the wall time per prompt (p50 / p95), the generated tokens, and the time per generated token.

    .venv/bin/python -m benchmarks.choices_cost [--prompts 8] [--choices 4] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import time

from benchmarks.latency_stats import p50_p95
from deployments.vllm_engine import VLLMChatEngine
from gateway.engine import Completion, GenerationRequest

PLACES = ["Paris", "Lagos", "Lima", "Oslo", "Hanoi", "Quito", "Cairo", "Perth", "Dakar", "Turin"]


async def _run(prompts: int, choices: int, max_tokens: int) -> None:
    engine = VLLMChatEngine(model="builtin:smollm2-135m-instruct", served_model_name="smollm2")
    await engine.start()

    def request(label: str, prompt: str, n: int = 1, seed: int = 0) -> GenerationRequest:
        messages = [{"role": "user", "content": prompt}]
        return GenerationRequest(label, messages, max_tokens=max_tokens, n=n, temperature=1.0, seed=seed)

    async def sequential(prompt: str, label: str) -> list[Completion]:
        return [await engine.complete(request(f"{label}-{i}", prompt, seed=i)) for i in range(choices)]

    async def concurrent(prompt: str, label: str) -> list[Completion]:
        return list(
            await asyncio.gather(*(engine.complete(request(f"{label}-{i}", prompt, seed=i)) for i in range(choices)))
        )

    async def parallel(prompt: str, label: str) -> list[Completion]:
        return [await engine.complete(request(label, prompt, n=choices))]

    async def single(prompt: str, label: str) -> list[Completion]:
        return [await engine.complete(request(label, prompt))]

    modes = {
        "1 choice": single,
        f"n={choices}, one request": parallel,
        f"{choices} requests at once": concurrent,
        f"{choices} requests in a row": sequential,
    }
    latencies_ms: dict[str, list[float]] = {label: [] for label in modes}
    tokens: dict[str, list[int]] = {label: [] for label in modes}
    answers: dict[str, int] = {label: 0 for label in modes}
    try:
        await engine.complete(GenerationRequest("warm-up", [{"role": "user", "content": "Hi"}], max_tokens=4))
        for index in range(prompts):
            prompt = f"Describe {PLACES[index % len(PLACES)]} in three sentences."
            for label, run in modes.items():
                started = time.perf_counter()
                completions = await run(prompt, f"{label}-{index}")
                latencies_ms[label].append((time.perf_counter() - started) * 1000)
                tokens[label].append(sum(c.completion_tokens for c in completions))
                answers[label] += sum(len(c.choices()) for c in completions)
    finally:
        await engine.shutdown()
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}; vLLM CPU engine, SmolLM2-135M")
    print(f"{prompts} prompts per mode, temperature 1, max_tokens {max_tokens} per choice\n")
    print("| mode | answers | p50 ms per prompt | p95 ms | tokens per prompt | ms per token |")
    print("|---|---|---|---|---|---|")
    for label in modes:
        p50, p95 = p50_p95(latencies_ms[label])
        per_token = sum(latencies_ms[label]) / max(1, sum(tokens[label]))
        print(
            f"| {label} | {answers[label]} | {p50:.0f} | {p95:.0f} | "
            f"{statistics.mean(tokens[label]):.1f} | {per_token:.1f} |"
        )


def main() -> None:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--choices", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(_run(args.prompts, args.choices, args.max_tokens))


if __name__ == "__main__":
    main()
