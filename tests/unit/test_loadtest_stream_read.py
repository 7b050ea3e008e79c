"""The load test's stream reader: TTFT, usage, problems and the end, for every API."""

from __future__ import annotations

import time

from loadtest.stream_read import StreamRead


def test_a_chat_stream_takes_ttft_from_the_first_content_and_usage_from_the_last_chunk() -> None:
    read = StreamRead(time.perf_counter())
    read.chat_event({"choices": [{"delta": {"role": "assistant", "content": ""}}]})
    assert read.ttft_ms is None  # the role chunk carries no text
    read.chat_event({"choices": [{"delta": {"content": "Hi"}}]})
    first = read.ttft_ms
    read.chat_event({"choices": [{"delta": {"content": " there"}}]})
    read.chat_event({"choices": [], "usage": {"completion_tokens": 2}})
    assert first is not None and read.ttft_ms == first
    assert (read.usage, read.problem, read.done) == ({"completion_tokens": 2}, None, False)
    read.chat_event({"error": {"message": "boom"}})
    assert read.problem == "error event: boom"


def test_a_responses_stream_ends_with_the_whole_response_or_its_failure() -> None:
    read = StreamRead(time.perf_counter())
    read.responses_event({"type": "response.created", "response": {"usage": None}})
    read.responses_event({"type": "response.output_text.delta", "delta": ""})
    assert read.ttft_ms is None and not read.done
    read.responses_event({"type": "response.output_text.delta", "delta": "Hi"})
    read.responses_event({"type": "response.incomplete", "response": {"usage": {"output_tokens": 1}}})
    assert read.ttft_ms is not None and read.done and read.usage == {"output_tokens": 1}
    failed = StreamRead(time.perf_counter())
    failed.responses_event({"type": "error", "message": "engine died"})
    failed.responses_event({"type": "response.failed", "response": {}})
    assert (failed.problem, failed.done) == ("error event: engine died", False)
    alone = StreamRead(time.perf_counter())
    alone.responses_event({"type": "response.failed", "response": {}})
    assert alone.problem == "response.failed"


def test_a_completions_stream_takes_ttft_from_the_first_text() -> None:
    read = StreamRead(time.perf_counter())
    read.completion_event({"object": "text_completion", "choices": [{"text": "", "index": 0}]})
    assert read.ttft_ms is None
    read.completion_event({"object": "text_completion", "choices": [{"text": " Paris", "index": 0}]})
    read.completion_event({"object": "text_completion", "choices": [], "usage": {"completion_tokens": 1}})
    assert read.ttft_ms is not None and read.usage == {"completion_tokens": 1} and read.problem is None
    read.completion_event({"error": {"message": "engine died"}})
    assert read.problem == "error event: engine died"
