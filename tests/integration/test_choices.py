"""``n > 1`` end to end: both hosted transports against a real local upstream, the official openai
SDK against the in-process app, the ledger and the response cache on a real Redis."""

from __future__ import annotations

import openai
import pytest

from gateway.engine import GenerationRequest, collect_completion
from gateway.redis_server import EmbeddedRedis
from tests.fakes.openai_upstream import FakeOpenAIUpstream, UpstreamBehaviour
from tests.integration.conftest import AppFactory, cached_chat, flushed_totals, gateway_config, hosted_engine

CHAT = "/v1/chat/completions"
QUESTION = {"role": "user", "content": "a b"}


@pytest.mark.parametrize("transport", ["litellm", "openai"])
@pytest.mark.parametrize("stream", [False, True])
async def test_both_transports_return_every_choice(
    fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour, transport: str, stream: bool
) -> None:
    engine = hosted_engine(fake_upstream.base_url, transport)
    await engine.start()
    request = GenerationRequest("r", [QUESTION], max_tokens=50, n=3, logprobs=True)
    completion = await (collect_completion(engine.stream(request)) if stream else engine.complete(request))
    assert [(c.index, c.text, c.finish_reason) for c in completion.choices()] == [
        (0, "large says: a b", "stop"),
        (1, "large says: a b#1", "stop"),
        (2, "large says: a b#2", "stop"),
    ]
    assert ["".join(t.token for t in c.logprobs) for c in completion.choices()] == [
        c.text for c in completion.choices()
    ]
    assert (completion.prompt_tokens, completion.completion_tokens) == (2, 12)
    assert upstream_behaviour.requests[-1]["n"] == 3
    await engine.shutdown()


async def test_the_openai_sdk_gets_n_choices_and_the_ledger_their_tokens(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> None:
    config = gateway_config(redis_server.url, fake_upstream.base_url)
    async with make_app(config) as (client, services):
        api = openai.AsyncOpenAI(base_url="http://gateway/v1", api_key="unused", http_client=client, max_retries=0)
        whole = await api.chat.completions.create(model="fake-large", messages=[QUESTION], n=2)  # type: ignore[list-item]
        assert [c.message.content for c in whole.choices] == ["large says: a b", "large says: a b#1"]
        assert whole.usage is not None and whole.usage.completion_tokens == 8

        texts: dict[int, str] = {}
        finished: dict[int, str] = {}
        usage = None
        stream = await api.chat.completions.create(
            model="fake-large",
            messages=[QUESTION],  # type: ignore[list-item]
            n=2,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in stream:
            usage = chunk.usage or usage
            for choice in chunk.choices:
                texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
                if choice.finish_reason:
                    finished[choice.index] = choice.finish_reason
        assert texts == {0: "large says: a b", 1: "large says: a b#1"}
        assert finished == {0: "stop", 1: "stop"}
        assert usage is not None and usage.completion_tokens == 8

        totals = await flushed_totals(services)
        assert sum(s.counts.completion_tokens for s in totals) == 16
        assert sum(s.counts.requests for s in totals) == 2


async def test_the_cache_keys_n(
    make_app: AppFactory,
    redis_server: EmbeddedRedis,
    fake_upstream: FakeOpenAIUpstream,
    upstream_behaviour: UpstreamBehaviour,
) -> None:
    body = {"model": "fake-large", "messages": [QUESTION]}
    async with cached_chat(make_app, redis_server.url, fake_upstream.base_url, body) as ask:
        assert (await ask()).headers["x-slm-router-cache"] == "miss"
        two = await ask(n=2)
        assert two.headers["x-slm-router-cache"] == "miss"
        again = await ask(n=2)
        assert again.headers["x-slm-router-cache"] == "hit"
        assert [c["message"]["content"] for c in again.json()["choices"]] == ["large says: a b", "large says: a b#1"]
        assert (await ask(n=1)).headers["x-slm-router-cache"] == "hit"  # n 1 is the default
        sent = len(upstream_behaviour.requests)
        refused = await ask(n=9)
        assert (refused.status_code, refused.json()["error"]["param"]) == (400, "n")
        assert len(upstream_behaviour.requests) == sent
