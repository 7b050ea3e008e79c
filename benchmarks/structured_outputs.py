"""What structured outputs cost and buy on the small tier (the vLLM engine, as the gateway runs it).

For the same prompts, each asking for a person as JSON, it times four modes through
:class:`deployments.vllm_engine.VLLMChatEngine`: three ``response_format`` modes, none (the
prompt alone asks for JSON), ``json_object`` and a ``json_schema`` (name, age), and a tool
call that ``tool_choice`` forces, with the same schema as the function's parameters (the
JSON is then the call's arguments). It prints per mode the latency (p50 / p95), generated
tokens, how many answers were cut at ``max_tokens``, and how many parse as JSON and satisfy
the schema.
Requests run one at a time (temperature 0 by default), so the figures are the grammar's own
cost. The engine decodes compact JSON, as the gateway's tiers do by default (``compact_json``);
``--any-whitespace`` measures vLLM's own default grammar instead.

    .venv/bin/python -m benchmarks.structured_outputs [--requests 20] [--temperature 1] [--any-whitespace]
    .venv/bin/python -m benchmarks.structured_outputs --schemas --max-tokens 48 [--any-whitespace]
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
from gateway.errors import GatewayError

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
        # What the gateway sets for a tier that makes the call by constrained decoding.
        "forced_function": {"name": "record_person", "parameters": PERSON},
    },
}
#: JSON Schema features at the edge of what the grammar backends compile (``--schemas``).
EDGE_SCHEMAS: dict[str, dict[str, Any]] = {
    "look-behind pattern": {"type": "object", "properties": {"a": {"type": "string", "pattern": "(?<=x)y"}}},
    "pattern + maxLength": {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "^[A-Z]+$", "maxLength": 5}},
        "required": ["code"],
    },
    "uniqueItems": {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True, "maxItems": 3}},
        "required": ["tags"],
    },
    "multipleOf": {"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 5}}, "required": ["n"]},
    "patternProperties": {"type": "object", "patternProperties": {"^x": {"type": "integer"}}},
    "format: email": {"type": "object", "properties": {"e": {"type": "string", "format": "email"}}, "required": ["e"]},
    "nested $defs": {
        "$defs": {
            "P": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10}}, "required": ["name"]}
        },
        "type": "object",
        "properties": {"people": {"type": "array", "items": {"$ref": "#/$defs/P"}, "maxItems": 2}},
        "required": ["people"],
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


async def _edge_schemas(engine: VLLMChatEngine, max_tokens: int) -> None:
    """Each edge schema once, greedy: served (with the answer) or refused (with the reason)."""
    for name, schema in EDGE_SCHEMAS.items():
        response_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
        messages = [{"role": "user", "content": "Reply in JSON."}]
        request = GenerationRequest(name, messages, max_tokens, temperature=0, response_format=response_format)
        try:
            completion = await engine.complete(request)
        except GatewayError as exc:
            print(f"{name:22} refused: {exc.status_code} {exc.param}: {exc.message.splitlines()[-1][:90]}")
        else:
            print(f"{name:22} served, {completion.finish_reason}: {completion.text[:100]!r}")


async def _run(requests: int, max_tokens: int, temperature: float, compact_json: bool, edge: bool) -> None:
    engine = VLLMChatEngine(
        model="builtin:smollm2-135m-instruct", served_model_name="smollm2", compact_json=compact_json
    )
    await engine.start()
    try:
        await engine.complete(GenerationRequest("warm-up", [{"role": "user", "content": "Hi"}], max_tokens=4))
        if edge:
            await _edge_schemas(engine, max_tokens)
            return
        print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}; vLLM CPU engine, SmolLM2-135M")
        whitespace = "compact JSON (compact_json)" if compact_json else "vLLM's default JSON grammar (any whitespace)"
        print(f"{requests} requests per mode, one at a time, temperature {temperature:g}, max_tokens {max_tokens}")
        print(f"{whitespace}\n")
        columns = [("p50 ms", 8), ("p95 ms", 8), ("tokens", 7), ("ms/token", 9), ("cut", 6), ("JSON", 6), ("schema", 7)]
        print(f"{'mode':20} " + " ".join(f"{name:>{width}}" for name, width in columns))
        for mode, fields in MODES.items():
            latencies, tokens, parsed, valid, cut = [], [], 0, 0, 0
            for index in range(requests):
                request = GenerationRequest(
                    f"{mode}-{index}",
                    [{"role": "user", "content": _prompt(index)}],
                    max_tokens=max_tokens,
                    temperature=temperature,
                    seed=index,
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
    parser.add_argument("--temperature", type=float, default=0.0, help="each request's seed is its index")
    parser.add_argument("--any-whitespace", action="store_true", help="turn the engine's compact_json off")
    parser.add_argument("--schemas", action="store_true", help="instead: which edge-case schemas are served")
    args = parser.parse_args()
    asyncio.run(_run(args.requests, args.max_tokens, args.temperature, not args.any_whitespace, args.schemas))


if __name__ == "__main__":
    main()
