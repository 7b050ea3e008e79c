"""Locust chat traffic against slm-router (a first version; the load-test issue extends it).

Run headless for a bounded time against a local gateway:

    .venv/bin/locust -f loadtest/locustfile.py --host http://127.0.0.1:8000 \
        --headless -u 8 -r 4 -t 60s --csv loadtest/out/run --html loadtest/out/run.html

Imports nothing heavy (no Ray, no litellm): they break Locust's gevent timer.
"""

from __future__ import annotations

import json
import os
import random

from locust import FastHttpUser, between, task

PROMPTS = [
    "What is the capital of France?",
    "Give me a synonym for happy.",
    "Translate 'good morning' into Spanish.",
    "Explain, step by step, why the sum of the angles of a triangle is 180 degrees.",
    "A train leaves at 3pm going 60 mph; another leaves at 4pm going 80 mph. When does the second catch up?",
    "Summarise the causes of the First World War in three bullet points.",
]
MODEL = os.environ.get("SLM_ROUTER_LOADTEST_MODEL", "router")
MAX_TOKENS = int(os.environ.get("SLM_ROUTER_LOADTEST_MAX_TOKENS", "32"))


def _body(stream: bool) -> dict[str, object]:
    body: dict[str, object] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": random.choice(PROMPTS)}],
        "max_tokens": MAX_TOKENS,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


class ChatUser(FastHttpUser):
    """Sends non-stream and stream chat completions."""

    wait_time = between(0.1, 0.5)

    @task(3)
    def chat(self) -> None:
        with self.client.post("/v1/chat/completions", json=_body(False), name="chat", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
                return
            data = response.json()
            if not data.get("choices") or "usage" not in data:
                response.failure("missing choices or usage")

    @task(1)
    def chat_stream(self) -> None:
        with self.client.post(
            "/v1/chat/completions", json=_body(True), name="chat-stream", stream=True, catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
                return
            text = response.text or ""
            frames = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
            if not frames or frames[-1] != "[DONE]":
                response.failure("stream did not end with [DONE]")
            elif any("error" in json.loads(f) for f in frames[:-1]):
                response.failure("error event in stream")
