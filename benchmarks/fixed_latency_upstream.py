"""A lean fixed-latency OpenAI-compatible upstream for overhead benchmarks.

aiohttp's own server rather than the tests' FastAPI fake: at concurrency 128 with 50 ms of
latency the upstream must answer ~2,500 req/s, which a FastAPI route on a shared core does
not, and the upstream must never be what the benchmark measures.

    python -m benchmarks.fixed_latency_upstream --port 9100 --latency-ms 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from aiohttp import web

__all__ = ["make_app"]

_ANSWER = ["Hello", " from", " the", " fixed", "-latency", " upstream", "."]


def _completion(max_tokens: int) -> tuple[str, str, dict[str, int]]:
    words = _ANSWER[:max_tokens]
    finish = "length" if len(words) < len(_ANSWER) else "stop"
    return (
        "".join(words),
        finish,
        {"prompt_tokens": 12, "completion_tokens": len(words), "total_tokens": 12 + len(words)},
    )


def make_app(latency_s: float) -> web.Application:
    """The app: ``POST /v1/chat/completions`` (stream and non-stream) after ``latency_s``."""

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        await asyncio.sleep(latency_s)
        model = str(body.get("model", "fake-large"))
        text, finish, usage = _completion(int(body.get("max_tokens") or 16))
        created = int(time.time())
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "chatcmpl-bench",
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
                    ],
                    "usage": usage,
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": created, "model": model}
        chunks = [{"index": 0, "delta": {"content": text}}], [{"index": 0, "delta": {}, "finish_reason": finish}]
        for choices in chunks:
            await response.write(f"data: {json.dumps({**base, 'choices': choices})}\n\n".encode())
        if (body.get("stream_options") or {}).get("include_usage"):
            await response.write(f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


def main() -> None:
    """Serve in the foreground."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop ships with Ray Serve's uvicorn[standard]
        pass
    web.run_app(make_app(args.latency_ms / 1000), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
