"""What ``logprobs`` costs on the small tier (the vLLM engine, as the gateway runs it).

The same prompts, greedy (temperature 0, so every mode generates the same tokens), through
:class:`deployments.vllm_engine.VLLMChatEngine` with logprobs off, on with no alternatives,
and on with 5 and 20 alternatives. Modes take turns prompt by prompt, so a drift in the
machine's speed hits them alike. It prints per mode the latency (p50 / p95), generated tokens,
time per token against logprobs off, and checks that the tokens join to the text.

    .venv/bin/python -m benchmarks.logprobs_cost [--requests 20] [--max-tokens 48]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import time

from benchmarks.latency_stats import p50_p95
from deployments.vllm_engine import VLLMChatEngine
from gateway.engine import GenerationRequest

#: (label, logprobs, top_logprobs)
MODES: tuple[tuple[str, bool, int], ...] = (
    ("off", False, 0),
    ("logprobs, top 0", True, 0),
    ("logprobs, top 5", True, 5),
    ("logprobs, top 20", True, 20),
)
PLACES = ["Paris", "Lagos", "Lima", "Oslo", "Hanoi", "Quito", "Cairo", "Perth", "Dakar", "Turin"]


async def _run(requests: int, max_tokens: int) -> None:
    engine = VLLMChatEngine(model="builtin:smollm2-135m-instruct", served_model_name="smollm2")
    await engine.start()
    latencies: dict[str, list[float]] = {label: [] for label, _, _ in MODES}
    tokens: dict[str, list[int]] = {label: [] for label, _, _ in MODES}
    aligned: dict[str, int] = {label: 0 for label, _, _ in MODES}
    try:
        await engine.complete(GenerationRequest("warm-up", [{"role": "user", "content": "Hi"}], max_tokens=4))
        for index in range(requests):
            prompt = f"Describe {PLACES[index % len(PLACES)]} in three sentences."
            for label, logprobs, top in MODES:
                request = GenerationRequest(
                    f"{label}-{index}",
                    [{"role": "user", "content": prompt}],
                    max_tokens=max_tokens,
                    temperature=0,
                    logprobs=logprobs,
                    top_logprobs=top,
                )
                started = time.perf_counter()
                completion = await engine.complete(request)
                latencies[label].append((time.perf_counter() - started) * 1000)
                tokens[label].append(completion.completion_tokens)
                joined = "".join(t.token for t in completion.logprobs)
                aligned[label] += (not logprobs) or (
                    len(completion.logprobs) == completion.completion_tokens and joined.startswith(completion.text)
                )
    finally:
        await engine.shutdown()
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}; vLLM CPU engine, SmolLM2-135M")
    print(f"{requests} requests per mode, one at a time, greedy, max_tokens {max_tokens}\n")
    print("| mode | p50 ms | p95 ms | tokens | ms/token | vs off | tokens join to the text |")
    print("|---|---|---|---|---|---|---|")
    base = sum(latencies["off"]) / max(1, sum(tokens["off"]))
    for label, _, _ in MODES:
        p50, p95 = p50_p95(latencies[label])
        per_token = sum(latencies[label]) / max(1, sum(tokens[label]))
        print(
            f"| {label} | {p50:.0f} | {p95:.0f} | {statistics.mean(tokens[label]):.1f} | "
            f"{per_token:.1f} | {per_token / base:.2f}x | {aligned[label]}/{requests} |"
        )


def main() -> None:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20, help="requests per mode")
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()
    asyncio.run(_run(args.requests, args.max_tokens))


if __name__ == "__main__":
    main()
