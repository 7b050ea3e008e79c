"""What structured outputs cost and buy on the small tier (the vLLM engine, as the gateway runs it).

For the same prompts, each asking for a person as JSON, it times four modes through
:class:`deployments.vllm_engine.VLLMChatEngine`: three ``response_format`` modes, none (the
prompt alone asks for JSON), ``json_object`` and a ``json_schema`` (name, age), and a tool
call that ``tool_choice`` forces, with the same schema as the function's parameters (the
JSON is then the call's arguments). It prints per mode the latency (p50 / p95), generated
tokens, how many answers were cut at ``max_tokens``, and how many parse as JSON and satisfy
the schema.
Requests run one at a time, at temperature 0, so the figures are the grammar's own cost.

    .venv/bin/python -m benchmarks.structured_outputs [--requests 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from typing import Any

from jsonschema import Draft202012Validator

from benchmarks.latency_stats import p50_p95
from deployments.vllm_engine import VLLMChatEngine
from gateway.engine import GenerationRequest

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 40}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
#: Each mode's ``GenerationRequest`` fields.
MODES: dict[str, dict[str, Any]] = {
    "none (prompt only)": {},
    "json_object": {"response_format": {"type": "json_object"}},
    "json_schema": {
        "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    },
    "forced tool call": {
        "tools": [{"type": "function", "function": {"name": "record_person", "parameters": PERSON}}],
        "tool_choice": {"type": "function", "function": {"name": "record_person"}},
    },
}
PLACES = ["Paris", "Lagos", "Lima", "Oslo", "Hanoi", "Quito", "Cairo", "Perth", "Dakar", "Turin"]


def _prompt(index: int) -> str:
    place = PLACES[index % len(PLACES)]
    return f"Invent a person who lives in {place}. Reply with JSON holding their name and age."


def _verdict(text: str) -> tuple[bool, bool]:
    try:
        value = json.loads(text)
    except ValueError:
        return False, False
    return True, Draft202012Validator(PERSON).is_valid(value)


async def _run(requests: int, max_tokens: int) -> None:
    engine = VLLMChatEngine(model="builtin:smollm2-135m-instruct", served_model_name="smollm2")
    await engine.start()
    try:
        await engine.complete(GenerationRequest("warm-up", [{"role": "user", "content": "Hi"}], max_tokens=4))
        print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}; vLLM CPU engine, SmolLM2-135M")
        print(f"{requests} requests per mode, one at a time, temperature 0, max_tokens {max_tokens}\n")
        columns = [("p50 ms", 8), ("p95 ms", 8), ("tokens", 7), ("ms/token", 9), ("cut", 6), ("JSON", 6), ("schema", 7)]
        print(f"{'mode':20} " + " ".join(f"{name:>{width}}" for name, width in columns))
        for mode, fields in MODES.items():
            latencies, tokens, parsed, valid, cut = [], [], 0, 0, 0
            for index in range(requests):
                request = GenerationRequest(
                    f"{mode}-{index}",
                    [{"role": "user", "content": _prompt(index)}],
                    max_tokens=max_tokens,
                    temperature=0,
                    **fields,
                )
                started = time.perf_counter()
                completion = await engine.complete(request)
                latencies.append((time.perf_counter() - started) * 1000)
                tokens.append(completion.completion_tokens)
                cut += completion.finish_reason == "length"
                calls = completion.tool_calls
                is_json, is_valid = _verdict(calls[0].arguments if calls else completion.text)
                parsed += is_json
                valid += is_valid
            p50, p95 = p50_p95(latencies)
            per_token = sum(latencies) / max(1, sum(tokens))
            print(
                f"{mode:20} {p50:8.0f} {p95:8.0f} {statistics.mean(tokens):7.1f} "
                f"{per_token:9.1f} {cut:>3}/{requests:<2} {parsed:>3}/{requests:<2} {valid:>3}/{requests:<2}"
            )
    finally:
        await engine.shutdown()


def main() -> None:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20, help="requests per mode")
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    asyncio.run(_run(args.requests, args.max_tokens))


if __name__ == "__main__":
    main()
