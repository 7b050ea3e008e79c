"""The official openai SDK, sync and async, stream and not, against the running Serve app."""

from __future__ import annotations

import json
import time

import openai
import pydantic
import pytest

from tests.fakes.openai_upstream import UpstreamBehaviour

SMALL = "smollm2-135m-instruct"


def whitespace_outside_strings(text: str) -> str:
    """The whitespace of JSON ``text`` that is not inside a string (none in compact JSON)."""
    found, in_string, escaped = [], False, False
    for char in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char.isspace():
            found.append(char)
    return "".join(found)


def test_models_list_has_router_and_every_tier(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list().data]
    assert ids == ["router", SMALL, "local-large-standin", "fake-large"]


def test_sync_non_stream_small_model_returns_real_text(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="router",
        messages=[{"role": "user", "content": "What is the capital of France? Answer in one sentence."}],
        max_tokens=24,
        temperature=0,
        seed=7,
    )
    completion = raw.parse()
    assert raw.headers["x-slm-router-tier"] == "small"
    assert completion.model == SMALL
    text = completion.choices[0].message.content or ""
    assert len(text.split()) >= 3, text
    assert "Paris" in text
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 10
    assert 1 <= completion.usage.completion_tokens <= 24
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert completion.choices[0].finish_reason in {"stop", "length"}


def test_sync_stream_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=SMALL,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "Name a colour."}]},
        ],
        max_completion_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes and finishes[-1] in {"stop", "length"}
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    assert 1 <= usage.completion_tokens <= 12
    assert all(c.model == SMALL for c in chunks)


def test_temperature_zero_is_deterministic(client: openai.OpenAI) -> None:
    args = {
        "model": SMALL,
        "messages": [{"role": "user", "content": "Count: one, two,"}],
        "max_tokens": 8,
        "temperature": 0,
    }
    first = client.chat.completions.create(**args).choices[0].message.content
    second = client.chat.completions.create(**args).choices[0].message.content
    assert first == second


async def test_async_large_tier_goes_through_litellm(
    aclient: openai.AsyncOpenAI, upstream_behaviour: UpstreamBehaviour
) -> None:
    raw = await aclient.chat.completions.with_raw_response.create(
        model="fake-large", messages=[{"role": "user", "content": "hello there"}], max_tokens=50, user="u-1"
    )
    completion = raw.parse()
    assert raw.headers["x-slm-router-tier"] == "large"
    assert completion.model == "fake-large"
    assert completion.choices[0].message.content == "large says: hello there"
    assert completion.usage is not None and completion.usage.completion_tokens == 4
    sent = upstream_behaviour.requests[-1]
    assert sent["model"] == "fake-large" and sent["max_tokens"] == 50
    assert sent["messages"] == [{"role": "user", "content": "hello there"}]


async def test_async_large_tier_stream(aclient: openai.AsyncOpenAI, upstream_behaviour: UpstreamBehaviour) -> None:
    stream = await aclient.chat.completions.create(
        model="fake-large",
        messages=[{"role": "user", "content": "stream me please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "large says: stream me please"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    assert upstream_behaviour.requests[-1]["stream"] is True


async def test_stand_in_tier_answers_through_litellm_with_local_model(aclient: openai.AsyncOpenAI) -> None:
    raw = await aclient.chat.completions.with_raw_response.create(
        model="local-large-standin", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8
    )
    completion = raw.parse()
    assert raw.headers["x-slm-router-tier"] == "medium"
    assert completion.model == "local-large-standin"
    assert (completion.choices[0].message.content or "").strip()
    assert completion.usage is not None and 1 <= completion.usage.completion_tokens <= 8


def test_sdk_raises_typed_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as not_found:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert not_found.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="router", messages=[{"role": "user", "content": "hi"}], n=9)
    assert bad.value.param == "n"
    with pytest.raises(openai.BadRequestError) as no_tools:
        client.chat.completions.create(
            model=SMALL,
            messages=[{"role": "user", "content": "What is the weather in Paris?"}],
            tools=[WEATHER],
        )
    assert (no_tools.value.param, no_tools.value.code) == ("tools", "unsupported_parameter")
    assert "fake-large" in str(no_tools.value.message)  # names the model that has tool calling


WEATHER: dict[str, object] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_tool_calls_round_trip_through_the_sdk(client: openai.OpenAI) -> None:
    # Only the large tier (litellm -> the fake upstream) calls tools; the small model and the
    # stand-in cannot, so the router sends the whole exchange there, whatever the score.
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    raw = client.chat.completions.with_raw_response.create(model="router", messages=question, tools=[WEATHER])
    completion = raw.parse()
    assert (raw.headers["x-slm-router-tier"], raw.headers["x-slm-router-reason"]) == ("large", "tools")
    assert float(raw.headers["x-slm-router-score"]) >= 0.0
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name) for c in calls] == [("call_fake_0", "get_weather")]
    assert json.loads(calls[0].function.arguments) == {"city": "What is the weather in Paris?"}

    # The same through the stream: the SDK's fragments join to the same call.
    joined: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in client.chat.completions.create(model="router", messages=question, tools=[WEATHER], stream=True):
        for delta_call in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            entry = joined.setdefault(delta_call.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += delta_call.id or ""
            entry["name"] += (delta_call.function.name or "") if delta_call.function else ""
            entry["arguments"] += (delta_call.function.arguments or "") if delta_call.function else ""
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert finish == "tool_calls"
    assert joined == {0: {"id": "call_fake_0", "name": "get_weather", "arguments": calls[0].function.arguments}}

    # The tool's result goes back; the model answers in text, and the usage is accounted.
    follow_up = client.chat.completions.with_raw_response.create(
        model="router",
        messages=[
            *question,
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": calls[0].id, "content": "18C and sunny"},
        ],
        tools=[WEATHER],
    )
    answer = follow_up.parse()
    assert follow_up.headers["x-slm-router-reason"] == "tools"
    assert answer.choices[0].message.content == "large says: tool results: 18C and sunny"
    assert answer.choices[0].message.tool_calls is None
    assert float(follow_up.headers["x-slm-router-cost-usd"]) > 0


def test_the_small_model_makes_the_call_tool_choice_forces(client: openai.OpenAI) -> None:
    # Structured extraction as instructor and LangChain ask for it: tool_choice names one function,
    # and vLLM constrains the small model's decoding to its parameters, so the router need not
    # send it to a tier with tool calling.
    city = {"type": "string", "maxLength": 20}
    extract: dict[str, object] = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Look up the weather in a city",
            "parameters": {"type": "object", "properties": {"city": city}, "required": ["city"]},
        },
    }
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    named = {"type": "function", "function": {"name": "get_weather"}}
    common = {"messages": question, "tools": [extract], "tool_choice": named, "max_tokens": 48, "temperature": 0}
    raw = client.chat.completions.with_raw_response.create(
        model="router", extra_headers={"x-slm-router-threshold": "1"}, **common
    )
    completion = raw.parse()
    # Scored and kept on the small tier by the request's threshold, not moved for tool calling.
    assert (raw.headers["x-slm-router-tier"], raw.headers["x-slm-router-reason"]) == ("small", "override")
    choice = completion.choices[0]
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather"]
    assert calls[0].id.startswith("call_")
    arguments = json.loads(calls[0].function.arguments)
    assert set(arguments) == {"city"} and isinstance(arguments["city"], str) and len(arguments["city"]) <= 20
    assert choice.finish_reason == "stop"  # as OpenAI answers a call it was told to make
    # Compact, as OpenAI's models write arguments (the tier's compact_json): no newlines padding it.
    assert whitespace_outside_strings(calls[0].function.arguments) == "", calls[0].function.arguments

    # Streamed, from the small model named directly, with "required" and the one function:
    # the fragments join to the same call, which the model was asked to choose.
    name, joined, finish = "", "", None
    required = {**common, "tool_choice": "required"}
    for chunk in client.chat.completions.create(model=SMALL, stream=True, **required):
        for part in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            name += (part.function.name or "") if part.function else ""
            joined += (part.function.arguments or "") if part.function else ""
        finish = (chunk.choices[0].finish_reason if chunk.choices else None) or finish
    assert (name, joined, finish) == ("get_weather", calls[0].function.arguments, "tool_calls")

    # A schema the grammar cannot take is the client's 400 naming the tools, before any generation.
    for parameters in (
        {"type": "objekt"},
        {"type": "object", "properties": {"x": {"type": "string", "pattern": "(?<=a)b"}}},
    ):
        broken = {"type": "function", "function": {"name": "get_weather", "parameters": parameters}}
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model=SMALL, **{**common, "tools": [broken]})
        assert refused.value.param == "tools", refused.value.message

    # The legacy form of the same ask gets the same call back in its own shape.
    legacy = client.chat.completions.create(
        model=SMALL,
        messages=question,  # type: ignore[arg-type]
        functions=[extract["function"]],  # type: ignore[list-item]
        function_call={"name": "get_weather"},
        max_tokens=48,
        temperature=0,
    )
    assert legacy.choices[0].message.function_call is not None
    assert legacy.choices[0].message.function_call.arguments == calls[0].function.arguments


class Person(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=24)
    age: int


@pytest.mark.parametrize("model", [SMALL, "local-large-standin"])
def test_structured_outputs_parse_into_the_clients_type(client: openai.OpenAI, model: str) -> None:
    # The SDK turns Person into a strict json_schema; vLLM constrains decoding to it, so even
    # a 135M model's answer parses. The stand-in tier takes the field through litellm and
    # the product's own OpenAI endpoint to the same engine.
    completion = client.chat.completions.parse(
        model=model,
        messages=[{"role": "user", "content": "Invent a person with a name and an age."}],
        response_format=Person,
        max_tokens=60,
        temperature=0,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert isinstance(choice.message.parsed, Person), choice.message.content
    assert choice.message.parsed.name
    assert choice.message.content is not None
    assert whitespace_outside_strings(choice.message.content) == "", choice.message.content


def test_json_mode_stream_from_the_small_model_is_one_json_object(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=SMALL,
        messages=[{"role": "user", "content": "Give me a JSON object with a name and an age."}],
        response_format={"type": "json_object"},
        max_tokens=60,
        temperature=0,
        stream=True,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert isinstance(json.loads(text), dict), text
    assert whitespace_outside_strings(text) == "", text


def test_json_requests_the_small_model_cannot_honour_are_400(client: openai.OpenAI) -> None:
    # A valid JSON Schema whose regex (a look-behind) vLLM's grammar compiler refuses: the
    # client's 400 naming response_format, and the engine goes on serving.
    lookbehind = {"type": "object", "properties": {"a": {"type": "string", "pattern": "(?<=x)y"}}}
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=SMALL,
            messages=[{"role": "user", "content": "hi"}],
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": lookbehind}},
            max_tokens=8,
        )
    assert refused.value.param == "response_format"
    with pytest.raises(openai.BadRequestError) as no_word:
        client.chat.completions.create(
            model=SMALL, messages=[{"role": "user", "content": "hi"}], response_format={"type": "json_object"}
        )
    assert no_word.value.param == "messages"
    after = client.chat.completions.create(model=SMALL, messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    assert after.choices[0].message.content


@pytest.mark.parametrize("model", [SMALL, "local-large-standin"])
def test_logprobs_from_the_real_engine_match_the_text(client: openai.OpenAI, model: str) -> None:
    # Greedy decoding picks the most likely token, so each token is its own top alternative.
    # The stand-in tier carries the fields through litellm and the product's own endpoint.
    request = {
        "model": model,
        "messages": [{"role": "user", "content": "Name a colour."}],
        "max_tokens": 8,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 2,
    }
    completion = client.chat.completions.create(**request)  # type: ignore[call-overload]
    choice = completion.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    tokens = choice.logprobs.content
    assert len(tokens) == completion.usage.completion_tokens
    # vLLM lists every generated token, an end-of-turn token included, which the text leaves out.
    assert "".join(t.token for t in tokens).startswith(choice.message.content or "")
    for token in tokens:
        assert token.logprob <= 0 and len(token.top_logprobs) == 2
        assert token.top_logprobs[0].logprob >= token.top_logprobs[1].logprob
        assert token.top_logprobs[0].token == token.token
        assert token.top_logprobs[0].logprob == pytest.approx(token.logprob, abs=1e-4)
    chunks = list(client.chat.completions.create(**request, stream=True))  # type: ignore[call-overload]
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content or []]
    assert [t.token for t in streamed] == [t.token for t in tokens]
    assert [t.logprob for t in streamed] == pytest.approx([t.logprob for t in tokens], abs=1e-3)


@pytest.mark.parametrize("model", [SMALL, "local-large-standin"])
def test_n_choices_from_the_real_engine(client: openai.OpenAI, model: str) -> None:
    # vLLM samples the choices in parallel; through the stand-in, litellm passes n along.
    question = [{"role": "user", "content": "Name a fruit."}]
    sampled = client.chat.completions.create(model=model, messages=question, n=3, max_tokens=8, temperature=1.0)  # type: ignore[arg-type]
    assert [c.index for c in sampled.choices] == [0, 1, 2]
    assert all((c.message.content or "").strip() and c.finish_reason in {"stop", "length"} for c in sampled.choices)
    assert sampled.usage is not None and 3 <= sampled.usage.completion_tokens <= 24
    # vLLM refuses n > 1 when greedy; the engine decodes once and answers with n copies.
    greedy = client.chat.completions.create(model=model, messages=question, n=2, max_tokens=8, temperature=0)  # type: ignore[arg-type]
    assert [c.index for c in greedy.choices] == [0, 1]
    assert (greedy.choices[0].message.content or "").strip()
    # Greedy decoding makes both choices the same text, so the usage covers the two equally.
    assert greedy.choices[0].message.content == greedy.choices[1].message.content
    assert greedy.usage is not None and greedy.usage.completion_tokens % 2 == 0
    assert 2 <= greedy.usage.completion_tokens <= 16

    texts: dict[int, str] = {}
    finished: dict[int, str] = {}
    for chunk in client.chat.completions.create(
        model=model,
        messages=question,  # type: ignore[arg-type]
        n=2,
        max_tokens=8,
        temperature=0,
        stream=True,
    ):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finished[choice.index] = choice.finish_reason
    assert texts == {0: greedy.choices[0].message.content, 1: greedy.choices[1].message.content}
    assert set(finished) == {0, 1}


def test_responses_api_over_the_real_engine_stream_and_stored(client: openai.OpenAI) -> None:
    # /v1/responses through Ray Serve: the same pipeline and real engine as chat completions.
    args = {"model": SMALL, "input": "What is the capital of France?", "instructions": "Answer in one sentence."}
    raw = client.responses.with_raw_response.create(**args, max_output_tokens=24, temperature=0)
    response = raw.parse()
    assert raw.headers["x-slm-router-tier"] == "small"
    assert "Paris" in response.output_text
    assert response.usage is not None and 1 <= response.usage.output_tokens <= 24
    chat = client.chat.completions.create(
        model=SMALL,
        messages=[{"role": "system", "content": args["instructions"]}, {"role": "user", "content": args["input"]}],
        max_tokens=24,
        temperature=0,
    )
    assert response.output_text == chat.choices[0].message.content
    with client.responses.stream(**args, max_output_tokens=24, temperature=0) as stream:
        kinds = [event.type for event in stream]
        streamed = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] in {"response.completed", "response.incomplete"}
    assert streamed.output_text == response.output_text
    assert client.responses.retrieve(streamed.id).output_text == streamed.output_text
    follow_up = client.responses.create(
        model=SMALL, input="And of Italy?", previous_response_id=response.id, max_output_tokens=16, temperature=0
    )
    assert follow_up.previous_response_id == response.id and follow_up.output_text.strip()
    # In the background: answered queued, run on in the ingress replica, polled to its end.
    queued = client.responses.create(**args, max_output_tokens=24, temperature=0, background=True)
    assert queued.status == "queued" and queued.background
    deadline = time.monotonic() + 60
    while (polled := client.responses.retrieve(queued.id)).status == "queued":
        assert time.monotonic() < deadline, "the background response did not finish"
        time.sleep(0.2)
    assert polled.status in {"completed", "incomplete"} and polled.output_text == response.output_text
    # Streamed in the background: the creator reads the events as the run writes them; a client
    # whose connection dropped resumes from a sequence number, and the SDK's helper rebuilds the
    # whole response from a resumed stream.
    created = list(client.responses.create(**args, max_output_tokens=24, temperature=0, background=True, stream=True))
    assert [event.sequence_number for event in created] == list(range(len(created)))
    assert [event.type for event in created[:3]] == ["response.created", "response.queued", "response.in_progress"]
    assert created[-1].type in {"response.completed", "response.incomplete"}
    resumed = list(client.responses.retrieve(created[0].response.id, stream=True, starting_after=2))
    assert [event.model_dump() for event in resumed] == [event.model_dump() for event in created[3:]]
    with client.responses.stream(response_id=created[0].response.id, starting_after=4) as again:
        assert [event.sequence_number for event in again] == list(range(5, len(created)))
        assert again.get_final_response().output_text == response.output_text
    # A conversation: the response continues its items and adds its turn.
    conversation = client.conversations.create(items=[{"type": "message", "role": "user", "content": args["input"]}])
    continued = client.responses.create(
        model=SMALL, input="And of Italy?", conversation=conversation.id, max_output_tokens=16, temperature=0
    )
    assert continued.conversation is not None and continued.conversation.id == conversation.id
    turns = client.conversations.items.list(conversation.id, order="asc").data
    assert [item.type for item in turns] == ["message", "message", "message"]
    assert turns[-1].content[0].text == continued.output_text  # type: ignore[union-attr]
