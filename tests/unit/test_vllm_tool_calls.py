"""Tool calling on a vLLM tier with a ``tool_call_parser``: the model's own call syntax read by
vLLM's real parser as it streams, ``required`` as a constrained array of calls, and what the
chat template is given. The real engine serves these in ``tests/serve/test_vllm_tool_calling.py``."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from deployments.vllm_tool_calls import (
    ParsedToolCalls,
    RequiredToolCalls,
    ToolCallReader,
    load_tool_parser,
    named_function,
    required_calls_schema,
    template_messages,
)
from gateway.engine import GenerationRequest, ToolCallPart, merge_tool_calls
from gateway.errors import ConfigError
from gateway.local_models import resolve_model_path
from tests.unit.test_tool_calls import CALL, TIME, USER, WEATHER


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(resolve_model_path("builtin:smollm2-135m-instruct")))


@pytest.fixture(scope="module", autouse=True)
def _vllm_importable() -> None:
    # pip's internals (imported by test_supply_chain) leave the standard library's distutils
    # loaded, and setuptools' shim, which torch imports under vLLM, then refuses to load.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SETUPTOOLS_USE_DISTUTILS", "stdlib")
        import vllm.tool_parsers.utils  # noqa: F401


@pytest.fixture(scope="module")
def hermes() -> type[Any]:
    """vLLM's parser of Hermes' ``<tool_call>`` syntax."""
    return load_tool_parser("hermes")


def request(**fields: Any) -> GenerationRequest:
    return GenerationRequest("t", [USER], 64, **{"tools": [WEATHER, TIME], "tool_choice": "auto", **fields})


def stream_through(reader: ToolCallReader, tokenizer: Any, output: str) -> tuple[str, tuple[ToolCallPart, ...]]:
    """Feed ``output`` one token at a time, as vLLM streams it; return all content and fragments."""
    ids = tokenizer.encode(output, add_special_tokens=False)
    content, parts = "", []
    sent = ""
    for end in range(1, len(ids) + 1):
        # Decoded as vLLM's detokenizer does: the text so far, minus what was sent.
        text = tokenizer.decode(ids[:end])
        piece, sent = text[len(sent) :], text
        more_content, more_parts = reader.feed(piece, ids[end - 1 : end])
        content += more_content
        parts.extend(more_parts)
    rest, last = reader.finish("stop")
    return content + rest, (*parts, *last)


def test_the_parser_turns_the_models_call_syntax_into_streamed_openai_calls(hermes: type[Any], tokenizer: Any) -> None:
    reader = ParsedToolCalls(hermes, tokenizer, request())
    output = 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    content, parts = stream_through(reader, tokenizer, output)
    assert content.strip() == "Let me check."
    assert "<tool_call>" not in content
    assert reader.called
    (call,) = merge_tool_calls(parts)
    assert (call.index, call.name, json.loads(call.arguments)) == (0, "get_weather", {"city": "Paris"})
    # OpenAI's id form; only the first fragment carries the id and the name, as OpenAI streams.
    assert call.id is not None and call.id.startswith("call_") and len(call.id) == 29
    assert [part.id for part in parts if part.id] == [call.id]
    assert len(parts) > 1, "the arguments should stream in fragments"


def test_several_calls_get_their_own_index_unless_parallel_calls_are_off(hermes: type[Any], tokenizer: Any) -> None:
    output = (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>'
    )
    _, parts = stream_through(ParsedToolCalls(hermes, tokenizer, request()), tokenizer, output)
    calls = merge_tool_calls(parts)
    assert [(c.index, c.name, json.loads(c.arguments)) for c in calls] == [
        (0, "get_weather", {"city": "Paris"}),
        (1, "get_time", {"zone": "CET"}),
    ]
    assert calls[0].id != calls[1].id
    single = ParsedToolCalls(hermes, tokenizer, request(parallel_tool_calls=False))
    _, parts = stream_through(single, tokenizer, output)
    assert [(c.index, c.name) for c in merge_tool_calls(parts)] == [(0, "get_weather")]


@pytest.mark.parametrize(
    "output",
    [
        "It is sunny in Paris today.",
        # Held back while it could be the start of a call; sent once the answer is over.
        "Use the tag <tool",
        # A call that never forms is the model's text, not a lost answer.
        "<tool_call>\nno json here",
    ],
)
def test_text_without_a_call_reaches_the_client_whole(hermes: type[Any], tokenizer: Any, output: str) -> None:
    reader = ParsedToolCalls(hermes, tokenizer, request())
    content, parts = stream_through(reader, tokenizer, output)
    assert (content, parts, reader.called) == (output, (), False)


def test_required_reads_the_constrained_array_of_calls() -> None:
    reader = RequiredToolCalls()
    assert reader.feed('[{"name": "get_time", "parameters": {"zone": "UTC"}},', [1]) == ("", ())
    reader.feed(' {"name": "get_weather", "parameters": {"city": "Oslo"}}]', [2])
    _, calls = reader.finish("stop")
    assert [(c.index, c.name, json.loads(c.arguments)) for c in calls] == [
        (0, "get_time", {"zone": "UTC"}),
        (1, "get_weather", {"city": "Oslo"}),
    ]
    assert all(c.id and c.id.startswith("call_") for c in calls) and reader.called
    # Cut short by max_tokens: the text as generated, no half-made call.
    cut = RequiredToolCalls()
    cut.feed('[{"name": "get_ti', [1])
    assert cut.finish("length") == ('[{"name": "get_ti', ()) and not cut.called


def test_the_required_schema_admits_only_calls_of_offered_functions_with_their_arguments() -> None:
    schema = required_calls_schema(request(tool_choice="required"))
    jsonschema.validate(
        [{"name": "get_weather", "parameters": {"city": "Oslo"}}, {"name": "get_time", "parameters": {}}], schema
    )
    for wrong in (
        [],
        [{"name": "get_stock", "parameters": {}}],
        [{"name": "get_weather", "parameters": {}}],  # its required "city" is missing
        [{"name": "get_weather"}],
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(wrong, schema)
    single = required_calls_schema(request(tool_choice="required", parallel_tool_calls=False))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([{"name": "get_time", "parameters": {}}] * 2, single)
    # Parameters that refer to their own $defs (as pydantic writes them) keep working inside the array.
    place = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    book = {
        "type": "function",
        "function": {
            "name": "book",
            "parameters": {
                "type": "object",
                "properties": {"to": {"$ref": "#/$defs/Place"}},
                "$defs": {"Place": place},
            },
        },
    }
    with_defs = required_calls_schema(request(tools=[book, TIME], tool_choice="required"))
    jsonschema.validate([{"name": "book", "parameters": {"to": {"city": "Oslo"}}}], with_defs)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([{"name": "book", "parameters": {"to": {}}}], with_defs)
    assert book["function"]["parameters"]["$defs"] == {"Place": place}  # the request's own tools are left as they were


def test_the_named_or_only_required_function_is_made_by_constrained_decoding() -> None:
    named = {"type": "function", "function": {"name": "get_time"}}
    assert named_function(request(tool_choice=named)) == TIME["function"]
    assert named_function(request(tool_choice="required")) is None  # the model chooses among two
    only = GenerationRequest("t", [USER], 64, tools=[WEATHER], tool_choice="required")
    assert named_function(only) == WEATHER["function"]
    assert named_function(request()) is None


def test_templates_get_call_arguments_as_objects_and_no_missing_content() -> None:
    turns = [
        USER,
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "22C"},
    ]
    rendered = template_messages(turns)
    assert rendered[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Oslo"}
    assert rendered[1]["content"] == ""
    assert rendered[2] == turns[2] and rendered[0] == USER
    assert turns[1]["tool_calls"][0] == CALL  # the request's own messages are left as they were
    broken = {**CALL, "function": {"name": "f", "arguments": "not json"}}
    assert template_messages([{"role": "assistant", "content": None, "tool_calls": [broken]}])[0]["tool_calls"] == [
        broken
    ]


def test_an_unknown_parser_name_is_a_config_error_naming_the_known_ones(hermes: type[Any]) -> None:
    with pytest.raises(ConfigError) as refused:
        load_tool_parser("hermes2")
    assert "'hermes2'" in str(refused.value) and "hermes" in str(refused.value).split(":", 1)[1]
