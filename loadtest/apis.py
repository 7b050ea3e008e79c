"""The APIs a load test drives (``--api``): each one's path, Locust entry names and request body.

Pure data and functions, with nothing of Locust's: the locustfile and the tests share them.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIS",
    "CHAT",
    "CHAT_PATH",
    "CHAT_STREAM",
    "COMPLETIONS",
    "COMPLETIONS_PATH",
    "COMPLETIONS_STREAM",
    "RESPONSES",
    "RESPONSES_PATH",
    "RESPONSES_STREAM",
    "request_body",
]

CHAT_PATH = "/v1/chat/completions"
RESPONSES_PATH = "/v1/responses"
COMPLETIONS_PATH = "/v1/completions"
CHAT = "chat"
CHAT_STREAM = "chat-stream"
RESPONSES = "responses"
RESPONSES_STREAM = "responses-stream"
COMPLETIONS = "completions"
COMPLETIONS_STREAM = "completions-stream"
#: Per ``--api``: the path, and the entry names of non-stream and stream requests.
APIS = {
    "chat": (CHAT_PATH, CHAT, CHAT_STREAM),
    "responses": (RESPONSES_PATH, RESPONSES, RESPONSES_STREAM),
    "completions": (COMPLETIONS_PATH, COMPLETIONS, COMPLETIONS_STREAM),
}


def request_body(api: str, model: str, max_tokens: int, text: str, stream: bool) -> dict[str, Any]:
    """The body that asks ``api`` to answer ``text`` (a user prompt)."""
    if api == "responses":
        # A Responses stream always ends with the whole response, usage included.
        body: dict[str, Any] = {"model": model, "input": text, "max_output_tokens": max_tokens}
        return {**body, "stream": True} if stream else body
    body = {"model": model, "max_tokens": max_tokens}
    if api == "completions":
        body["prompt"] = text
    else:
        body["messages"] = [{"role": "user", "content": text}]
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body
