"""The real vLLM engine (CPU, SmolLM2) with tool calling of its own: vLLM's ``hermes`` parser and a
ChatML template that renders tools in the syntax it reads (``chatml_tools.jinja``; SmolLM2's own
template renders none). A 135M model rarely chooses to call a tool under ``auto``, so the parser's
reading of calls is proved on canned output in ``tests/unit/test_vllm_tool_calls.py``; here the
engine serves every kind of tool use end to end."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from deployments.vllm_engine import VLLMChatEngine
from gateway.engine import EngineDelta, GenerationRequest, merge_tool_calls
from gateway.errors import ConfigError
from tests.unit.test_tool_calls import WEATHER

TEMPLATE = Path(__file__).with_name("chatml_tools.jinja")
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
    },
}
TOOLS = [WEATHER, TIME]
PARAMETERS = {tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
TOOL_TURNS = [
    *QUESTION,
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "22C and sunny"},
]


def tools_engine(**overrides: Any) -> VLLMChatEngine:
    settings: dict[str, Any] = {
        "model": "builtin:smollm2-135m-instruct",
        "served_model_name": "smollm2-tools",
        "max_model_len": 1024,
        # A small fixed KV cache: this engine runs beside the serve stack's own.
        "engine_kwargs": {"kv_cache_memory_bytes": 128 * 2**20},
        "tool_call_parser": "hermes",
        "chat_template": str(TEMPLATE),
        **overrides,
    }
    return VLLMChatEngine(**settings)


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[VLLMChatEngine]:
    started = tools_engine()
    await started.start()
    yield started
    await started.shutdown()


async def generate(
    engine: VLLMChatEngine, messages: list[dict[str, Any]], max_tokens: int = 32, **fields: Any
) -> list[EngineDelta]:
    request = GenerationRequest(f"tools-{uuid.uuid4().hex}", messages, max_tokens, temperature=0, tools=TOOLS, **fields)
    return [delta async for delta in engine.stream(request)]


def prompt_text(engine: VLLMChatEngine, messages: list[dict[str, Any]], tools: Any = None) -> str:
    return str(engine._tokenizer.decode(engine._prompt_token_ids(messages, tools)))


async def test_required_among_several_functions_is_one_or_more_valid_calls(engine: VLLMChatEngine) -> None:
    # Room for two calls (parallel calls are allowed): with compact JSON the model, greedy, makes
    # get_weather and get_time in 33 tokens, where it made one call in 32 before.
    deltas = await generate(engine, QUESTION, 64, tool_choice="required")
    assert "".join(d.text for d in deltas) == ""
    assert deltas[-1].finish_reason == "tool_calls"
    calls = merge_tool_calls(part for d in deltas for part in d.tool_calls)
    assert calls, "required must answer with a call"
    for call in calls:
        assert call.id and call.id.startswith("call_")
        jsonschema.validate(json.loads(call.arguments), PARAMETERS[call.name or ""])


async def test_a_named_function_is_called_after_tool_turns_the_template_renders(engine: VLLMChatEngine) -> None:
    rendered = prompt_text(engine, TOOL_TURNS, TOOLS)
    # The assistant's call as the model would write it (arguments as an object), and its result.
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in rendered
    assert "<tool_response>\n22C and sunny\n</tool_response>" in rendered
    assert '"name": "get_time"' in rendered  # the offered tools
    named = {"type": "function", "function": {"name": "get_time"}}
    deltas = await generate(engine, TOOL_TURNS, tool_choice=named)
    (call,) = merge_tool_calls(part for d in deltas for part in d.tool_calls)
    assert call.name == "get_time"
    jsonschema.validate(json.loads(call.arguments), PARAMETERS["get_time"])
    assert deltas[-1].finish_reason == "stop"  # as OpenAI finishes a call tool_choice names


async def test_auto_streams_the_models_own_answer(engine: VLLMChatEngine) -> None:
    deltas = await generate(engine, TOOL_TURNS, 12, tool_choice="auto")
    text = "".join(d.text for d in deltas)
    calls = merge_tool_calls(part for d in deltas for part in d.tool_calls)
    # Whatever the model chose: text never carries call markup, and a call is a parsed one.
    assert "<tool_call>" not in text or not calls
    assert text or calls
    for call in calls:
        assert call.name in PARAMETERS
    assert deltas[-1].finish_reason in ("stop", "length", "tool_calls")
    # Offered tools are in the prompt; declined ones are left out.
    assert "<tools>" in prompt_text(engine, QUESTION, TOOLS)
    declined = await generate(engine, QUESTION, 1, tool_choice="none")
    offered = await generate(engine, QUESTION, 1, tool_choice="auto")
    assert declined[-1].prompt_tokens < offered[-1].prompt_tokens
    assert not any(d.tool_calls for d in declined)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tool_call_parser": "hermes2"}, "tool_call_parser 'hermes2' is not one of vLLM's tool parsers"),
        ({"chat_template": "/nonexistent/tools.jinja"}, "chat_template '/nonexistent/tools.jinja' cannot be read"),
    ],
)
async def test_a_wrong_parser_or_template_fails_start_up_before_the_model_loads(
    overrides: dict[str, Any], message: str
) -> None:
    engine = tools_engine(**overrides)
    with pytest.raises(ConfigError, match=message):
        await engine.start()
    assert engine.stats()["in_flight"] == 0 and engine._engine is None
