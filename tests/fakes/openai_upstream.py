"""A real OpenAI-compatible HTTP server on loopback, standing in for a hosted model.

It answers deterministically (``"<prefix><last user message>"``, wrapped in JSON when
``response_format`` asks for it, or tool calls when tools are offered: see :func:`_tool_calls`;
``n`` choices, choice c > 0 marked "#c") with exact usage, and its behaviour can be changed
while it runs: added latency, an error status, or a hang.
Run it in a thread with :class:`FakeOpenAIUpstream` or as a script for benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

__all__ = ["FakeOpenAIUpstream", "UpstreamBehaviour", "create_fake_openai_app", "hosted_tier_settings"]


@dataclass
class UpstreamBehaviour:
    """What the fake upstream does; mutate it between requests."""

    model: str = "fake-large"
    prefix: str = "large says: "
    latency_s: float = 0.0
    fail_status: int | None = None
    fail_message: str = "injected failure"
    hang: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers_seen: list[dict[str, str]] = field(default_factory=list)
    #: The answer text for a request body, in place of the echo (a scripted model or judge).
    reply: Callable[[dict[str, Any]], str] | None = None
    #: Requests for which this returns true fail with ``fail_status`` (default 500).
    fail_when: Callable[[dict[str, Any]], bool] | None = None
    #: Prompt tokens reported as served from the provider's cache (``prompt_tokens_details``).
    cached_tokens: int = 0


#: Tokens the fake "thinks" for a request that sets ``reasoning_effort`` (as a reasoning model
#: does, counted in ``completion_tokens`` and reported in ``completion_tokens_details``).
REASONING_TOKENS = 7


def _words(text: str) -> list[str]:
    parts = text.split(" ")
    return [p if i == 0 else " " + p for i, p in enumerate(parts)]


def _instance(schema: Any, text: str) -> Any:
    # A value satisfying the simple schemas tests use (objects, arrays, scalars, enums).
    if not isinstance(schema, dict):
        return text
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {name: _instance(sub, text) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [_instance(schema.get("items"), text)]
    return {"integer": 1, "number": 1.5, "boolean": True, "null": None}.get(str(kind), text)


def _answer_text(body: dict[str, Any], text: str) -> str:
    """The echo, or, when ``response_format`` asks for JSON, JSON carrying it (as a real model would)."""
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_object":
        return json.dumps({"answer": text})
    if fmt.get("type") == "json_schema":
        return json.dumps(_instance((fmt.get("json_schema") or {}).get("schema") or {"type": "object"}, text))
    return text


def _logprobs(body: dict[str, Any], words: list[str]) -> list[dict[str, Any]] | None:
    """OpenAI's ``logprobs.content`` for ``words`` when asked: word i has logprob -(i+1)/10, and
    ``top_logprobs`` alternatives (the word itself first, then ``alt<k>``, each less likely)."""
    if not body.get("logprobs"):
        return None
    top = int(body.get("top_logprobs") or 0)

    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    content = []
    for i, word in enumerate(words):
        logprob = -(i + 1) / 10
        alternatives = [entry(word, logprob)] + [entry(f"alt{k}", logprob - k) for k in range(1, top)]
        content.append({**entry(word, logprob), "top_logprobs": alternatives[:top]})
    return content


def _tool_calls(body: dict[str, Any], text: str) -> list[dict[str, Any]] | None:
    """The calls a tool-calling model makes: the named tool, else every offered tool (the first
    alone with ``parallel_tool_calls: false``), arguments an instance of each tool's schema.
    None when not offered or declined, or when tool results end the conversation and the
    choice is not forced (a model then answers them in text)."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return None
    if body["messages"][-1].get("role") == "tool" and not isinstance(choice, dict) and choice != "required":
        return None
    if isinstance(choice, dict):
        tools = [t for t in tools if t["function"]["name"] == choice["function"]["name"]]
    elif body.get("parallel_tool_calls") is False:
        tools = tools[:1]
    return [
        {
            "id": f"call_fake_{i}",
            "type": "function",
            "function": {
                "name": tool["function"]["name"],
                "arguments": json.dumps(_instance(tool["function"].get("parameters") or {"type": "object"}, text)),
            },
        }
        for i, tool in enumerate(tools)
    ]


def _tool_call_fragments(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``delta.tool_calls`` items as OpenAI streams them: id and name first, then the arguments in two halves."""
    fragments: list[dict[str, Any]] = []
    for i, call in enumerate(calls):
        arguments = call["function"]["arguments"]
        half = len(arguments) // 2
        head = {
            "index": i,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        fragments.append(head)
        fragments.append({"index": i, "function": {"arguments": arguments[:half]}})
        fragments.append({"index": i, "function": {"arguments": arguments[half:]}})
    return fragments


def hosted_tier_settings(upstream_url: str, **overrides: Any) -> dict[str, Any]:
    """A hosted tier's config (``fake-large`` through litellm, no retries) pointing at this fake."""
    return {
        "kind": "litellm",
        "served_model_name": "fake-large",
        "model": "openai/fake-large",
        "api_base": upstream_url,
        "api_key_env": "SLM_TEST_UPSTREAM_KEY",
        "timeout_s": 3,
        "num_retries": 0,
        **overrides,
    }


def create_fake_openai_app(behaviour: UpstreamBehaviour) -> FastAPI:
    """The fake's ASGI app."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        behaviour.requests.append(body)
        behaviour.headers_seen.append(dict(request.headers))
        if behaviour.hang:
            await asyncio.sleep(3600)
        if behaviour.latency_s:
            await asyncio.sleep(behaviour.latency_s)
        if behaviour.fail_status is not None or (behaviour.fail_when is not None and behaviour.fail_when(body)):
            return JSONResponse(
                {"error": {"message": behaviour.fail_message, "type": "server_error", "param": None, "code": None}},
                status_code=behaviour.fail_status or 500,
            )
        last_user = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")
        if isinstance(last_user, list):
            last_user = "".join(p.get("text", "") for p in last_user)
        calls = _tool_calls(body, str(last_user))
        if body["messages"][-1].get("role") == "tool":
            results = [m["content"] for m in body["messages"] if m.get("role") == "tool"]
            last_user = "tool results: " + " | ".join(str(r) for r in results)
        text = behaviour.reply(body) if behaviour.reply is not None else behaviour.prefix + str(last_user)
        words = _words(_answer_text(body, text))
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or 1024
        words = words[:max_tokens]
        finish = "length" if len(words) == max_tokens else "stop"
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        usage: dict[str, Any] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(words),
            "total_tokens": prompt_tokens + len(words),
        }
        if calls is not None:
            words, finish = [], "tool_calls"
            arguments_tokens = sum(len(c["function"]["arguments"].split()) for c in calls)
            usage = {**usage, "completion_tokens": arguments_tokens, "total_tokens": prompt_tokens + arguments_tokens}
        # n > 1: choice c (> 0) is the same answer with "#c" on its last word; usage counts all.
        n = int(body.get("n") or 1)
        choice_words = [[*words[:-1], words[-1] + f"#{c}"] if c and words else list(words) for c in range(n)]
        completion_tokens = usage["completion_tokens"] * n
        usage = {**usage, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}
        if body.get("reasoning_effort"):
            completion_tokens += REASONING_TOKENS
            usage = {
                **usage,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "completion_tokens_details": {"reasoning_tokens": REASONING_TOKENS},
            }
        if behaviour.cached_tokens:
            usage = {**usage, "prompt_tokens_details": {"cached_tokens": behaviour.cached_tokens}}
        created = int(time.time())
        logprobs = [_logprobs(body, w) for w in choice_words]
        if not body.get("stream"):
            choices = []
            for c in range(n):
                message: dict[str, Any] = {
                    "role": "assistant",
                    "content": "".join(choice_words[c]) if calls is None else None,
                }
                if calls is not None:
                    message["tool_calls"] = calls
                choice = {"index": c, "message": message, "finish_reason": finish}
                if logprobs[c] is not None:
                    choice["logprobs"] = {"content": logprobs[c], "refusal": None}
                choices.append(choice)
            return {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": created,
                "model": behaviour.model,
                "choices": choices,
                "usage": usage,
            }

        async def frames() -> Any:
            base = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": created,
                "model": behaviour.model,
            }

            def frame(choice: dict[str, Any]) -> str:
                return f"data: {json.dumps({**base, 'choices': [choice]})}\n\n"

            for c in range(n):
                yield frame({"index": c, "delta": {"role": "assistant", "content": ""}})
            for i in range(len(words)):
                for c in range(n):
                    choice: dict[str, Any] = {"index": c, "delta": {"content": choice_words[c][i]}}
                    tokens = logprobs[c]
                    if tokens is not None:
                        choice["logprobs"] = {"content": [tokens[i]], "refusal": None}
                    yield frame(choice)
            for c in range(n):
                for fragment in _tool_call_fragments(calls or []):
                    yield frame({"index": c, "delta": {"tool_calls": [fragment]}})
                yield frame({"index": c, "delta": {}, "finish_reason": finish})
            if (body.get("stream_options") or {}).get("include_usage"):
                yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(frames(), media_type="text/event-stream")

    return app


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeOpenAIUpstream:
    """Runs the fake on 127.0.0.1 in a daemon thread."""

    def __init__(self, behaviour: UpstreamBehaviour | None = None, port: int | None = None) -> None:
        self.behaviour = behaviour or UpstreamBehaviour()
        self.port = port or _free_port()
        config = uvicorn.Config(
            create_fake_openai_app(self.behaviour), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAIUpstream:
        """Start serving and wait until the port accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake upstream did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.should_exit = True
        self._thread.join(timeout=10)


def main() -> None:
    """Run the fake upstream in the foreground (for benchmarks)."""
    parser = argparse.ArgumentParser(description="fixed-latency OpenAI-compatible upstream")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    behaviour = UpstreamBehaviour(latency_s=args.latency_ms / 1000)
    uvicorn.run(create_fake_openai_app(behaviour), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
