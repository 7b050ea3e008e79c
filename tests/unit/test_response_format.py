"""``response_format``: validated once in the protocol, carried to every engine as OpenAI's shape."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.errors import InvalidRequestError
from gateway.protocol import ChatCompletionRequest
from gateway.protocol.parsing import parse_body
from gateway.serving import ChatCompletionService, ChatResult
from tests.fakes.engines import ScriptedEngine
from tests.fakes.services import two_tier_service

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}


def parse(response_format: Any, content: str = "Answer in JSON.") -> ChatCompletionRequest:
    body = {"model": "router", "messages": [{"role": "user", "content": content}], "response_format": response_format}
    return parse_body(json.dumps(body).encode(), ChatCompletionRequest)


@pytest.mark.parametrize(
    ("response_format", "engine_sees"),
    [
        ({"type": "text"}, None),
        ({"type": "json_object"}, {"type": "json_object"}),
        (SCHEMA_FORMAT, SCHEMA_FORMAT),
        # A schema-less json_schema is valid (OpenAI's schema is optional); engines get it as sent.
        (
            {"type": "json_schema", "json_schema": {"name": "any"}},
            {"type": "json_schema", "json_schema": {"name": "any"}},
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "d", "description": "a person", "schema": {}}},
            {"type": "json_schema", "json_schema": {"name": "d", "description": "a person", "schema": {}}},
        ),
    ],
)
def test_valid_formats_reach_engines_in_openai_shape(response_format: Any, engine_sees: Any) -> None:
    request = parse(response_format)
    assert request.response_format is not None
    assert request.response_format.for_engine() == engine_sees
    # The cache key is built from this dump: the schema must keep its wire name.
    assert request.model_dump(mode="json", exclude_none=True)["response_format"] == response_format


@pytest.mark.parametrize(
    ("response_format", "param", "fragment"),
    [
        ("json", "response_format", "valid dictionary"),
        ({"type": "xml"}, "response_format.type", "'json_schema'"),
        ({"type": "json_schema"}, "response_format", "'json_schema' is required"),
        ({"type": "json_object", "json_schema": {"name": "x"}}, "response_format", "only allowed"),
        ({"type": "json_schema", "json_schema": {"schema": PERSON}}, "response_format.json_schema.name", "required"),
        ({"type": "json_schema", "json_schema": {"name": "a b"}}, "response_format.json_schema.name", "pattern"),
        ({"type": "json_schema", "json_schema": {"name": "x" * 65}}, "response_format.json_schema.name", "pattern"),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objekt"}}},
            "response_format.json_schema.schema",
            "not a valid JSON Schema: 'objekt' is not valid",
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "required": "name"}}},
            "response_format.json_schema.schema",
            "(at 'required')",
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "("}}},
            "response_format.json_schema.schema",
            "'(' is not a 'regex'",
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"$schema": ["not", "a", "uri"]}}},
            "response_format.json_schema.schema",
            "cannot be checked",
        ),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": []}}, "response_format.json_schema.schema", ""),
        # A misspelt field would leave the answer unconstrained: refused, not ignored.
        ({"type": "json_schema", "json_schema": {"name": "x", "schemas": PERSON}}, "response_format.json_schema", ""),
        ({"type": "json_object", "strict": True}, "response_format.strict", "Extra inputs"),
    ],
)
def test_bad_formats_are_400_naming_the_field(response_format: Any, param: str, fragment: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse(response_format)
    assert info.value.status_code == 400
    assert info.value.param is not None and info.value.param.startswith(param)
    assert fragment in info.value.message


def test_draft_07_schemas_are_checked_against_their_own_draft() -> None:
    # "definitions" and a boolean "exclusiveMinimum" are draft-04 style; draft-07 wants a number.
    old_style = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "number", "exclusiveMinimum": True}
    with pytest.raises(InvalidRequestError, match="exclusiveMinimum"):
        parse({"type": "json_schema", "json_schema": {"name": "x", "schema": old_style}})
    draft_07 = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "number", "exclusiveMinimum": 0}
    assert parse({"type": "json_schema", "json_schema": {"name": "x", "schema": draft_07}}).response_format is not None


def service(small: ScriptedEngine, large: ScriptedEngine) -> ChatCompletionService:
    return two_tier_service(small, large)


@pytest.mark.parametrize("model", ["small-model", "large-model"])
async def test_every_tier_receives_the_format(model: str) -> None:
    small, large = ScriptedEngine(model="small-model"), ScriptedEngine(model="large-model")
    request = parse(SCHEMA_FORMAT).model_copy(update={"model": model})
    result = await service(small, large).create(request)
    assert isinstance(result, ChatResult)
    engine = small if model == "small-model" else large
    assert [r.response_format for r in engine.requests] == [SCHEMA_FORMAT]
    assert engine.requests[0].openai_optional_fields()["response_format"] == SCHEMA_FORMAT


async def test_text_format_sends_nothing_to_engines() -> None:
    small = ScriptedEngine(model="small-model")
    await service(small, ScriptedEngine()).create(parse({"type": "text"}))
    assert small.requests[0].response_format is None
    assert "response_format" not in small.requests[0].openai_optional_fields()


@pytest.mark.parametrize(
    ("messages", "refused"),
    [
        ([{"role": "user", "content": "Name three colours."}], True),
        ([{"role": "user", "content": "Name three colours as JSON."}], False),
        ([{"role": "system", "content": "Reply in json."}, {"role": "user", "content": "Colours?"}], False),
        ([{"role": "developer", "content": "Output: JSON"}, {"role": "user", "content": "Colours?"}], False),
    ],
)
async def test_json_mode_needs_the_word_json_in_the_messages(messages: list[dict[str, str]], refused: bool) -> None:
    small = ScriptedEngine(model="small-model")
    body = {"model": "router", "messages": messages, "response_format": {"type": "json_object"}}
    request = ChatCompletionRequest.model_validate(body)
    svc = service(small, ScriptedEngine())
    if refused:
        with pytest.raises(InvalidRequestError, match="must contain the word 'json'") as info:
            await svc.create(request)
        assert info.value.param == "messages"
        assert small.requests == []
    else:
        await svc.create(request)
        assert small.requests[0].response_format == {"type": "json_object"}
    # A JSON schema carries its own instructions: no such rule.
    await svc.create(request.model_copy(update={"response_format": parse(SCHEMA_FORMAT).response_format}))
