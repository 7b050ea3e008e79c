"""``response_format``: plain text, JSON mode and JSON-schema structured outputs.

Every tier honours it: the small model through vLLM's structured outputs (generation is
constrained to the grammar, so the answer parses), hosted models by passing the field
through. Checks that do not depend on the tier happen here, once, so a request gets the
same answer whichever tier the router picks: the schema must be a valid JSON Schema, and
JSON mode needs the word "json" in the messages (OpenAI's rule, without which a model may
emit whitespace until ``max_tokens``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from jsonschema import Draft202012Validator, SchemaError, validators
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.errors import InvalidRequestError

__all__ = [
    "JsonSchemaSpec",
    "ResponseFormat",
    "check_json_mode_prompt",
    "json_schema_problem",
    "valid_json_schema",
]


class _Format(BaseModel):
    # Unlike the rest of the request, unknown fields are refused: a misspelt "schema" would
    # otherwise be dropped and the answer silently left unconstrained. serialize_by_alias:
    # the cache key and hosted upstreams must see "schema", not "schema_".
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, serialize_by_alias=True)


def json_schema_problem(schema: dict[str, Any]) -> str | None:
    """Why ``schema`` is not a valid JSON Schema, or ``None`` when it is."""
    # jsonschema checks the schema against its own metaschema (the draft named by "$schema",
    # else 2020-12), regexes included; it resolves no remote references.
    try:
        validators.validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(part) for part in exc.absolute_path)
        return f"{exc.message}" + (f" (at '{where}')" if where else "")
    except Exception as exc:  # noqa: BLE001 - an odd "$schema" value can break the lookup itself
        return f"cannot be checked ({type(exc).__name__})"
    return None


def valid_json_schema(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """A field validator's body: refuse a schema that is not a valid JSON Schema."""
    if value is not None and (problem := json_schema_problem(value)) is not None:
        raise ValueError(f"not a valid JSON Schema: {problem}")
    return value


class JsonSchemaSpec(_Format):
    """``response_format.json_schema``: a named JSON Schema the answer must satisfy."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None

    _valid_json_schema = field_validator("schema_")(valid_json_schema)


class ResponseFormat(_Format):
    """``response_format``: ``text`` (the default), ``json_object`` or ``json_schema``.

    One model rather than a tagged union, so that an error in a nested field is reported at
    its plain path (``response_format.json_schema.schema``).
    """

    type: Literal["text", "json_object", "json_schema"]
    #: Required with (and only allowed with) ``type: "json_schema"``.
    json_schema: JsonSchemaSpec | None = None

    @model_validator(mode="after")
    def _schema_goes_with_its_type(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("'json_schema' is required when type is 'json_schema'")
        if self.type != "json_schema" and self.json_schema is not None:
            raise ValueError(f"'json_schema' is only allowed when type is 'json_schema', not {self.type!r}")
        return self

    def for_engine(self) -> dict[str, Any] | None:
        """The format as engines receive it: ``None`` for text, else OpenAI's JSON shape."""
        if self.type == "text":
            return None
        return self.model_dump(mode="json", exclude_none=True)


def check_json_mode_prompt(fmt: ResponseFormat | None, message_texts: Iterable[str]) -> None:
    """Refuse JSON mode when no message mentions JSON, with OpenAI's error."""
    if fmt is not None and fmt.type == "json_object" and not any("json" in text.lower() for text in message_texts):
        raise InvalidRequestError(
            "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
            param="messages",
        )
