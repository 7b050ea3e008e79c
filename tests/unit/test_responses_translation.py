"""The Responses API's translation to and from the chat pipeline: pure code, no app."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.errors import GatewayError, InvalidRequestError, UpstreamError
from gateway.protocol import ChatCompletionChunk, ChatCompletionResponse
from gateway.protocol.responses import ResponsesRequest
from gateway.serving.responses_input import chat_form, pending_calls
from gateway.serving.responses_output import (
    ResponseEventStream,
    ResponseShell,
    assistant_turn,
    input_item_list,
    listed_input_items,
    output_items,
)
from gateway.serving.responses_results import in_responses_terms
from gateway.serving.streaming import StreamItem


def req(**fields: Any) -> ResponsesRequest:
    return ResponsesRequest.model_validate({"model": "router", "input": "hi", **fields})


def call(call_id: str, name: str = "f", arguments: str = "{}") -> dict[str, Any]:
    return {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments}


def output(call_id: str, text: str = "ok") -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": text}


def test_instructions_lead_and_do_not_enter_the_stored_conversation() -> None:
    history = [{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "answer"}]
    form = chat_form(req(instructions="be brief", max_output_tokens=7, stream=True), history)
    messages = [m.model_dump(exclude_none=True) for m in form.request.messages]
    assert messages == [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": "earlier"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": "hi"},
    ]
    assert form.conversation == [*history, {"role": "user", "content": "hi"}]
    assert form.request.max_completion_tokens == 7
    assert form.request.wants_usage_in_stream()  # the final event needs the usage


def test_function_calls_join_the_assistant_turn_before_them() -> None:
    items = [
        {
            "role": "user",
            "content": [{"type": "input_text", "text": "weather "}, {"type": "input_text", "text": "in Oslo"}],
        },
        {"role": "assistant", "content": [{"type": "output_text", "text": "Let me look."}]},
        call("c1", "weather"),
        call("c2", "time"),
        output("c2", "noon"),
        output("c1", "18C"),
    ]
    form = chat_form(req(input=items))
    messages = [m.model_dump(exclude_none=True) for m in form.request.messages]
    assert messages[0] == {"role": "user", "content": "weather in Oslo"}
    assert messages[1]["content"] == "Let me look."
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["c1", "c2"]
    assert [(m["role"], m["tool_call_id"], m["content"]) for m in messages[2:]] == [
        ("tool", "c2", "noon"),
        ("tool", "c1", "18C"),
    ]
    # A call with no text before it opens an assistant turn of its own.
    alone = chat_form(req(input=[{"role": "user", "content": "q"}, call("c9"), output("c9")]))
    assert alone.request.messages[1].content is None and alone.request.messages[1].tool_calls


def test_outputs_may_answer_the_calls_a_stored_response_ended_with() -> None:
    history = [
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
    ]
    assert pending_calls(history) == {"c1": "f"}
    assert pending_calls([*history, {"role": "tool", "tool_call_id": "c1", "content": "x"}]) == {}
    form = chat_form(req(input=[output("c1")]), history)
    assert form.request.messages[-1].role == "tool"
    with pytest.raises(InvalidRequestError) as unanswered:
        chat_form(req(input="something else"), history)
    assert unanswered.value.param == "input[0]" and "'c1' (f)" in unanswered.value.message


@pytest.mark.parametrize(
    ("items", "param"),
    [
        ([output("c1")], "input[0].call_id"),
        ([call("c1"), {"role": "user", "content": "x"}], "input[1]"),
        ([call("c1")], "input"),
        ([call("c1"), output("c1"), output("c1")], "input[2].call_id"),
        ([call("c1"), call("c1")], "input[1].call_id"),
        ([call("c1"), output("c1"), call("c2"), {"role": "user", "content": "x"}], "input[3]"),
    ],
)
def test_tool_pairing_errors_name_the_input_item(items: list[dict[str, Any]], param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        chat_form(req(input=items))
    assert info.value.param == param


def test_tools_choice_and_format_become_their_chat_forms() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    form = chat_form(
        req(
            tools=[{"type": "function", "name": "f", "description": "d", "parameters": schema, "strict": True}],
            tool_choice={"type": "function", "name": "f"},
            parallel_tool_calls=False,
            text={"format": {"type": "json_schema", "name": "out", "schema": schema}},
        )
    )
    chat = form.request.model_dump(mode="json", exclude_none=True)
    assert chat["tools"] == [
        {"type": "function", "function": {"name": "f", "description": "d", "parameters": schema, "strict": True}}
    ]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert chat["parallel_tool_calls"] is False
    assert chat["response_format"] == {"type": "json_schema", "json_schema": {"name": "out", "schema": schema}}
    assert chat_form(req(text={"format": {"type": "text"}})).request.response_format is None


def test_errors_from_the_chat_pipeline_name_the_fields_the_client_sent() -> None:
    renamed = in_responses_terms(
        InvalidRequestError("max_completion_tokens is 9; at most 8", param="max_completion_tokens")
    )
    assert (renamed.param, renamed.message) == ("max_output_tokens", "max_output_tokens is 9; at most 8")
    assert isinstance(renamed, InvalidRequestError)
    assert in_responses_terms(InvalidRequestError("bad", param="messages[3].content")).param == "input"
    assert in_responses_terms(InvalidRequestError("bad", param="response_format")).param == "text.format"
    # JSON mode's check runs on the chat side; every chat field its message names is renamed.
    json_mode = InvalidRequestError(
        "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
        param="messages",
    )
    assert in_responses_terms(json_mode).message == (
        "'input' must contain the word 'json' in some form, to use 'text.format' of type 'json_object'."
    )
    other = UpstreamError("boom")
    assert in_responses_terms(other) is other


def completion(content: str | None, finish: str, calls: list[dict[str, Any]] | None = None) -> ChatCompletionResponse:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return ChatCompletionResponse.model_validate(
        {
            "id": "chatcmpl-abc",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }
    )


def test_non_stream_output_items_and_status() -> None:
    shell = ResponseShell(id="resp_abc", model="m", request=req(), store=True)
    body, items = shell.from_chat(completion("cut sh", "length"))
    assert (body["status"], body["incomplete_details"], body["completed_at"]) == (
        "incomplete",
        {"reason": "max_output_tokens"},
        None,
    )
    assert items[0]["status"] == "incomplete" and items[0]["content"][0]["text"] == "cut sh"
    assert body["usage"]["input_tokens"] == 3 and body["usage"]["output_tokens"] == 2
    fc = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    items, finish = output_items(completion(None, "tool_calls", [fc]))
    assert finish == "tool_calls" and [i["type"] for i in items] == ["function_call"]
    assert assistant_turn(items) == {"role": "assistant", "content": None, "tool_calls": [fc]}
    text_and_call, _ = output_items(completion("Looking.", "tool_calls", [fc]))
    assert assistant_turn(text_and_call)["content"] == "Looking."


def chunk(
    content: str | None = None,
    finish: str | None = None,
    calls: list[dict[str, Any]] | None = None,
    tokens: list[str] | None = None,
) -> ChatCompletionChunk:
    delta: dict[str, Any] = {}
    if content is not None:
        delta["content"] = content
    if calls is not None:
        delta["tool_calls"] = calls
    choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
    if tokens is not None:
        choice["logprobs"] = {"content": [{"token": t, "logprob": -1.0, "bytes": list(t.encode())} for t in tokens]}
    return ChatCompletionChunk.model_validate({"id": "chatcmpl-abc", "created": 1, "model": "m", "choices": [choice]})


async def run(items: list[StreamItem], stored: bool = True) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    kept: list[dict[str, Any]] = []
    frames: list[str] = []

    async def on_finished(response: dict[str, Any], _: list[dict[str, Any]]) -> bool:
        # Kept before the final event leaves, so a client chaining on it finds it.
        assert not any("response.completed" in frame or "response.incomplete" in frame for frame in frames)
        kept.append(response)
        return stored

    async def chunks() -> AsyncIterator[StreamItem]:
        for item in items:
            yield item

    stream = ResponseEventStream(ResponseShell(id="resp_abc", model="m", request=req(), store=True), on_finished)
    async for frame in stream.events(chunks()):
        frames.append(frame.decode())
    events = []
    for frame in frames:
        kind_line, data_line, _, _ = frame.split("\n")
        event = json.loads(data_line.removeprefix("data: "))
        assert kind_line == f"event: {event['type']}"
        events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events, kept


async def test_interleaved_tool_call_fragments_build_whole_calls_in_order() -> None:
    events, kept = await run(
        [
            chunk(content=""),
            chunk(content="Checking."),
            chunk(
                calls=[{"index": 0, "id": "c0", "type": "function", "function": {"name": "weather", "arguments": ""}}]
            ),
            chunk(calls=[{"index": 1, "id": "c1", "type": "function", "function": {"name": "time", "arguments": "{"}}]),
            chunk(calls=[{"index": 0, "function": {"arguments": '{"city": '}}]),
            chunk(calls=[{"index": 1, "function": {"arguments": "}"}}]),
            chunk(calls=[{"index": 0, "function": {"arguments": '"Oslo"}'}}], finish="tool_calls"),
        ]
    )
    final = events[-1]
    assert final["type"] == "response.completed"
    output = final["response"]["output"]
    assert [i["type"] for i in output] == ["message", "function_call", "function_call"]
    assert {i["status"] for i in output} == {"completed"}
    assert output[0]["content"][0]["text"] == "Checking."
    assert [(i["call_id"], i["name"], i["arguments"]) for i in output[1:]] == [
        ("c0", "weather", '{"city": "Oslo"}'),
        ("c1", "time", "{}"),
    ]
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [(e["output_index"], e["arguments"]) for e in done] == [(1, '{"city": "Oslo"}'), (2, "{}")]
    assert kept == [final["response"]]


async def test_a_stream_error_closes_open_items_and_fails_the_response() -> None:
    events, kept = await run([chunk(content="par"), UpstreamError("small-model failed mid-stream")])
    kinds = [e["type"] for e in events]
    assert kinds[-4:] == ["response.content_part.done", "response.output_item.done", "error", "response.failed"]
    failed = events[-1]["response"]
    assert failed["error"] == {"code": "upstream_error", "message": "small-model failed mid-stream"}
    assert failed["output"][0]["status"] == "incomplete"
    assert kept == []  # a failed response is not stored


async def test_an_empty_stream_still_answers_one_message_and_store_follows_the_callback() -> None:
    events, _ = await run([chunk(finish="stop")], stored=False)
    final = events[-1]["response"]
    assert final["output"][0]["content"][0]["text"] == "" and final["store"] is False
    assert "response.output_text.delta" not in [e["type"] for e in events]


async def test_closing_the_events_closes_the_chunks() -> None:
    closed: list[bool] = []

    async def chunks() -> AsyncIterator[StreamItem]:
        try:
            while True:
                yield chunk(content="x")
        finally:
            closed.append(True)

    stream = ResponseEventStream(ResponseShell(id="resp_abc", model="m", request=req(), store=False))
    events = stream.events(chunks())
    async for frame in events:
        if b"output_text.delta" in frame:
            break
    await events.aclose()  # type: ignore[attr-defined]
    assert closed == [True]


def test_gateway_errors_keep_their_class_when_renamed() -> None:
    error: GatewayError = InvalidRequestError("response_format is bad", param="response_format", code="x")
    renamed = in_responses_terms(error)
    assert (type(renamed), renamed.code, renamed.message) == (InvalidRequestError, "x", "text.format is bad")


async def test_stream_logprobs_ride_on_the_deltas_and_the_done_event() -> None:
    events, _ = await run(
        [
            chunk(content="Hi", tokens=["Hi"]),
            chunk(content=" there", tokens=[" there"]),
            chunk(content="", tokens=["<eot>"]),
        ]
    )
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert [[t["token"] for t in e["logprobs"]] for e in deltas] == [["Hi"], [" there"]]
    done = next(e for e in events if e["type"] == "response.output_text.done")
    # A token without text (vLLM lists the end of turn) has no delta, but is in the whole list.
    assert [t["token"] for t in done["logprobs"]] == ["Hi", " there", "<eot>"]
    assert events[-1]["response"]["output"][0]["content"][0]["logprobs"] == done["logprobs"]


def test_logprobs_are_asked_by_include_or_top_logprobs() -> None:
    assert not chat_form(req()).request.logprobs
    included = chat_form(req(include=["message.output_text.logprobs"])).request
    assert (included.logprobs, included.top_logprobs) == (True, None)
    top = chat_form(req(top_logprobs=3)).request
    assert (top.logprobs, top.top_logprobs) == (True, 3)
    # OpenAI's include values for items this gateway never makes change nothing.
    assert not chat_form(req(include=["reasoning.encrypted_content"])).request.logprobs


async def test_a_store_that_breaks_still_sends_the_whole_response() -> None:
    async def broken(response: dict[str, Any], items: list[dict[str, Any]]) -> bool:
        raise RuntimeError("store exploded")

    async def chunks() -> AsyncIterator[StreamItem]:
        yield chunk(content="done", finish="stop")

    stream = ResponseEventStream(ResponseShell(id="resp_abc", model="m", request=req(), store=True), broken)
    frames = [frame.decode() async for frame in stream.events(chunks())]
    final = json.loads(frames[-1].split("\n")[1].removeprefix("data: "))
    assert final["type"] == "response.completed"
    assert (final["response"]["store"], final["response"]["output"][0]["content"][0]["text"]) == (False, "done")


def test_input_items_are_listed_with_ids_and_paged_by_cursor() -> None:
    request = req(
        input=[
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "let me see"},
            call("c1", "f", '{"a": 1}'),
            output("c1", "done"),
        ]
    )
    listed = listed_input_items(request.input)
    assert [(i["type"], i["id"].split("_")[0]) for i in listed] == [
        ("message", "msg"),
        ("message", "msg"),
        ("function_call", "fc"),
        ("function_call_output", "fco"),
    ]
    assert [i["content"][0]["type"] for i in listed[:2]] == ["input_text", "output_text"]
    assert (listed[2]["call_id"], listed[2]["arguments"], listed[3]["output"]) == ("c1", '{"a": 1}', "done")
    newest = input_item_list(listed, limit=3)
    assert [i["id"] for i in newest["data"]] == [i["id"] for i in reversed(listed)][:3] and newest["has_more"]
    rest = input_item_list(listed, limit=3, after=newest["last_id"])
    assert rest["data"] == [listed[0]] and not rest["has_more"]
    assert input_item_list(listed, after="msg_unknown")["data"] == []
    assert input_item_list([], order="asc") == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }
