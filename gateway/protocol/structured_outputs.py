"""vLLM's ``structured_outputs``: decoding held to a choice, a regex, a grammar or a JSON Schema.

vLLM's OpenAI server reads it from chat and completions bodies, and it is how a small model is
held to a label set (``{"choice": ["positive", "negative"]}``), a format (``{"regex": ...}``),
a grammar (``{"grammar": <EBNF or Lark>}``) or a schema (``{"json": {...}}``): the answer
cannot stray from it. Only tiers served by vLLM can honour it, so a request that carries it
goes to one (a routed request moves to the nearest, a request naming another model is a 400):
passing it by, as an unknown field, would hand the client unconstrained text it then fails to
parse. vLLM's older spellings (``guided_choice``, ``guided_json``, ...) are refused, naming the
field to use (:mod:`gateway.protocol.unsupported`).

Checked here: exactly one constraint, no unknown keys (a misspelt one would leave the answer
unconstrained) and a valid JSON Schema; a regex or a grammar is compiled by vLLM's grammar
backend, whose refusal is the client's 400 too.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.protocol.response_format import valid_json_schema

__all__ = ["CONSTRAINTS", "StructuredOutputs"]

#: The constraints, of which a request sets exactly one (as vLLM requires).
CONSTRAINTS = ("json", "regex", "choice", "grammar", "json_object")

_Text = Annotated[str, Field(min_length=1, max_length=100_000)]


class StructuredOutputs(BaseModel):
    """The ``structured_outputs`` object of a chat or completions request."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    #: A JSON Schema the answer satisfies (an object, or its JSON text).
    json_: dict[str, Any] | None = Field(default=None, alias="json")
    #: A regular expression the whole answer matches.
    regex: _Text | None = None
    #: The answer is exactly one of these strings.
    choice: Annotated[list[Annotated[str, Field(min_length=1, max_length=10_000)]], Field(min_length=1)] | None = None
    #: A context-free grammar (EBNF as vLLM's backends read it, or Lark) the answer follows.
    grammar: _Text | None = None
    #: Any JSON object (JSON mode).
    json_object: bool | None = None
    #: Options of the JSON constraints, passed to vLLM as they are.
    disable_any_whitespace: bool | None = None
    disable_additional_properties: bool | None = None
    whitespace_pattern: _Text | None = None

    @field_validator("json_", mode="before")
    @classmethod
    def _schema_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError("json must be a JSON Schema: an object, or its JSON text") from None
        return value

    _valid_schema = field_validator("json_")(valid_json_schema)

    @model_validator(mode="after")
    def _one_constraint(self) -> StructuredOutputs:
        named = [name for name, value in self.constraints().items() if value is not None]
        if len(named) != 1:
            raise ValueError(f"set exactly one of {', '.join(CONSTRAINTS)} (got {', '.join(named) or 'none'})")
        if self.json_object is False:
            raise ValueError("json_object: false asks for no constraint; leave structured_outputs out")
        return self

    def constraints(self) -> dict[str, Any]:
        """The constraint fields by vLLM's names (one of them set)."""
        return {
            "json": self.json_,
            "regex": self.regex,
            "choice": self.choice,
            "grammar": self.grammar,
            "json_object": self.json_object,
        }

    def for_engine(self) -> dict[str, Any]:
        """vLLM's ``StructuredOutputsParams`` keywords: the set fields, by vLLM's names."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
