"""What every gateway response must look like, whatever the request was.

* never a 5xx;
* a non-2xx body is exactly OpenAI's envelope
  ``{"error": {"message": str, "type": str, "param": str | null, "code": str | int | null}}``;
* a 2xx chat answer is a valid ``chat.completion`` (or, streamed, ``chat.completion.chunk``
  frames ending in ``data: [DONE]``);
* a 2xx ``/v1/responses`` answer is a ``response`` object with consistent usage (or, streamed,
  typed events numbered from 0, from ``response.created`` to a final response event);
* a 2xx ``/v1/completions`` answer is a ``text_completion`` (or, streamed, such chunks and
  in-stream errors ending in ``data: [DONE]``);
* other 2xx answers are JSON objects.

:func:`violations` returns what is wrong (empty when the response is fine), so the CI test
can assert on it and the long-run script can count it.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError

from gateway.protocol import ChatCompletionChunk, ChatCompletionResponse
from gateway.protocol.completions import CompletionResponse

__all__ = ["envelope_problems", "violations"]

_ENVELOPE_KEYS = {"message", "type", "param", "code"}


def envelope_problems(body: bytes) -> list[str]:
    """Why ``body`` is not exactly OpenAI's error envelope (empty when it is)."""
    try:
        data = json.loads(body)
    except ValueError:
        return [f"error body is not JSON: {body[:80]!r}"]
    if not isinstance(data, dict) or set(data) != {"error"} or not isinstance(data["error"], dict):
        return [f"error body is not {{'error': {{...}}}}: {body[:120]!r}"]
    error: dict[str, Any] = data["error"]
    problems = []
    if set(error) != _ENVELOPE_KEYS:
        problems.append(f"error keys are {sorted(error)}, not {sorted(_ENVELOPE_KEYS)}")
    if not isinstance(error.get("message"), str) or not error.get("message"):
        problems.append("error.message is not a non-empty string")
    if not isinstance(error.get("type"), str):
        problems.append("error.type is not a string")
    if error.get("param") is not None and not isinstance(error["param"], str):
        problems.append("error.param is neither a string nor null")
    code = error.get("code")
    if code is not None and (isinstance(code, bool) or not isinstance(code, str | int)):
        problems.append("error.code is neither a string, an integer nor null")
    return problems


def _completion_problems(body: bytes) -> list[str]:
    try:
        response = ChatCompletionResponse.model_validate_json(body)
    except ValidationError as exc:
        return [f"2xx body is not a chat.completion: {exc.errors()[:1]}"]
    problems = []
    if not response.choices:
        problems.append("chat.completion without choices")
    usage = response.usage
    if usage.total_tokens != usage.prompt_tokens + usage.completion_tokens or usage.prompt_tokens < 0:
        problems.append(f"inconsistent usage {usage}")
    return problems


def _sse_payloads(body: bytes, what: str) -> tuple[list[str], list[str]]:
    """The ``data:`` payloads of an SSE body before its ``[DONE]``, and what is wrong with its framing."""
    lines = [line for line in body.decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines or lines[-1] != "data: [DONE]":
        return [], [f"{what} does not end with data: [DONE] (last: {lines[-1:]!r})"]
    payloads, problems = [], []
    for line in lines[:-1]:
        if line.startswith("data: "):
            payloads.append(line[len("data: ") :])
        else:
            problems.append(f"{what} line is not a data frame: {line[:80]!r}")
    return payloads, problems


def _frame_problems(payloads: list[str], model: type[BaseModel], what: str, *, errors_allowed: bool) -> list[str]:
    """What is wrong with JSON ``payloads`` that must each be a ``model`` (or, where
    ``errors_allowed``, an in-stream error envelope)."""
    problems = []
    for payload in payloads:
        try:
            data = json.loads(payload)
        except ValueError:
            problems.append(f"{what} is not JSON: {payload[:80]!r}")
            continue
        if errors_allowed and isinstance(data, dict) and "error" in data:
            problems += envelope_problems(payload.encode())
            continue
        try:
            model.model_validate(data)
        except ValidationError as exc:
            problems.append(f"not a {what}: {exc.errors()[:1]}")
    return problems


def _stream_problems(body: bytes) -> list[str]:
    payloads, problems = _sse_payloads(body, "stream")
    return problems + _frame_problems(payloads, ChatCompletionChunk, "chat.completion.chunk", errors_allowed=True)


def _text_completion_problems(body: bytes, *, streamed: bool) -> list[str]:
    if not streamed:
        return _frame_problems(
            [body.decode("utf-8", "replace")], CompletionResponse, "text_completion", errors_allowed=False
        )
    payloads, problems = _sse_payloads(body, "completion stream")
    return problems + _frame_problems(payloads, CompletionResponse, "text_completion", errors_allowed=True)


_FINAL_EVENTS = {"response.completed", "response.incomplete", "response.failed"}


def _response_object_problems(data: Any) -> list[str]:
    if not isinstance(data, dict) or data.get("object") != "response":
        return [f"2xx body is not a response object: {str(data)[:120]}"]
    problems = []
    if not isinstance(data.get("output"), list) or not data["output"]:
        problems.append("response without output")
    usage = data.get("usage")
    consistent = isinstance(usage, dict) and usage.get("total_tokens") == usage.get("input_tokens", 0) + usage.get(
        "output_tokens", 0
    )
    if data.get("status") != "failed" and not consistent:
        problems.append(f"inconsistent response usage {usage}")
    return problems


def _response_stream_problems(body: bytes) -> list[str]:
    frames = [frame for frame in body.decode("utf-8", "replace").split("\n\n") if frame.strip()]
    events = []
    for frame in frames:
        lines = frame.split("\n")
        if len(lines) != 2 or not lines[0].startswith("event: ") or not lines[1].startswith("data: "):
            return [f"response stream frame is not 'event:' + 'data:': {frame[:120]!r}"]
        try:
            data = json.loads(lines[1][len("data: ") :])
        except ValueError:
            return [f"response stream data is not JSON: {lines[1][:80]!r}"]
        if not isinstance(data, dict) or data.get("type") != lines[0][len("event: ") :]:
            return [f"response stream event type does not match its data: {frame[:120]!r}"]
        events.append(data)
    if not events or events[0]["type"] != "response.created" or events[-1]["type"] not in _FINAL_EVENTS:
        return [f"response stream runs {[e['type'] for e in events[:1]]}...{[e['type'] for e in events[-1:]]}"]
    if [e.get("sequence_number") for e in events] != list(range(len(events))):
        return ["response stream sequence numbers are not 0, 1, 2, ..."]
    return _response_object_problems(events[-1].get("response"))


def violations(path: str, status: int, headers: dict[str, str], body: bytes) -> list[str]:
    """Everything wrong with one response to ``path`` (empty when it keeps the contract)."""
    if status >= 500:
        return [f"5xx: {status} {body[:200]!r}"]
    content_type = headers.get("content-type", "")
    if not 200 <= status < 300:
        problems = envelope_problems(body)
        if not content_type.startswith("application/json"):
            problems.append(f"error content-type is {content_type!r}")
        return problems
    if path == "/v1/chat/completions":
        if content_type.startswith("text/event-stream"):
            return _stream_problems(body)
        return _completion_problems(body)
    if path == "/v1/completions":
        return _text_completion_problems(body, streamed=content_type.startswith("text/event-stream"))
    if path == "/v1/responses":
        if content_type.startswith("text/event-stream"):
            return _response_stream_problems(body)
        try:
            return _response_object_problems(json.loads(body))
        except ValueError:
            return [f"2xx body is not JSON: {body[:80]!r}"]
    try:
        data = json.loads(body)
    except ValueError:
        return [f"2xx body is not JSON: {body[:80]!r}"]
    return [] if isinstance(data, dict) else [f"2xx body is not a JSON object: {body[:80]!r}"]
