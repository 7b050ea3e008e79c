"""The load test's request bodies, per API."""

from __future__ import annotations

from loadtest.apis import APIS, COMPLETIONS_PATH, request_body


def test_each_api_asks_for_the_prompt_in_its_own_shape() -> None:
    chat = request_body("chat", "router", 32, "hi", stream=True)
    assert chat["messages"] == [{"role": "user", "content": "hi"}] and chat["stream_options"] == {"include_usage": True}
    responses = request_body("responses", "router", 32, "hi", stream=False)
    assert responses == {"model": "router", "input": "hi", "max_output_tokens": 32}
    completions = request_body("completions", "router", 32, "hi", stream=False)
    assert completions == {"model": "router", "max_tokens": 32, "prompt": "hi"}
    assert APIS["completions"][0] == COMPLETIONS_PATH
