"""``reasoning_effort`` and ``verbosity`` through the HTTP app with the official openai SDK: a
large tier that lists them in ``model_params`` gets them (through litellm, to a real local
upstream), the small tier does not, and the Responses API maps ``reasoning.effort`` and
``text.verbosity`` onto them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import openai
import pytest

from gateway.redis_server import EmbeddedRedis
from gateway.serving.assembly import ReplicaServices
from tests.fakes.engines import ScriptedEngine
from tests.fakes.openai_upstream import (
    REASONING_TOKENS,
    FakeOpenAIUpstream,
    UpstreamBehaviour,
    hosted_tier_settings,
)
from tests.integration.conftest import AppFactory, gateway_config, sdk

App = tuple[httpx.AsyncClient, ReplicaServices, ScriptedEngine]
USER = [{"role": "user", "content": "How many primes are there below 30?"}]


@pytest.fixture()
async def app(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream
) -> AsyncIterator[App]:
    large = hosted_tier_settings(fake_upstream.base_url, model_params=["reasoning_effort", "verbosity"])
    config = gateway_config(redis_server.url, fake_upstream.base_url, tiers={"large": large})
    small = ScriptedEngine(model="small-model")
    async with make_app(config, small=small) as (client, services):
        yield client, services, small


async def test_the_large_tier_gets_them_and_the_small_tier_answers_without_them(
    app: App, upstream_behaviour: UpstreamBehaviour
) -> None:
    client, _, small = app
    api = sdk(client)
    answer = await api.chat.completions.create(
        model="fake-large", messages=USER, reasoning_effort="low", verbosity="low"
    )
    assert answer.choices[0].message.content
    sent = upstream_behaviour.requests[-1]
    assert (sent["reasoning_effort"], sent["verbosity"]) == ("low", "low")
    # The model's thinking, counted in completion_tokens, is reported as OpenAI reports it.
    assert answer.usage is not None and answer.usage.completion_tokens_details is not None
    assert answer.usage.completion_tokens_details.reasoning_tokens == REASONING_TOKENS
    streamed = await api.chat.completions.create(
        model="fake-large", messages=USER, reasoning_effort="low", stream=True, stream_options={"include_usage": True}
    )
    usage = [chunk.usage async for chunk in streamed if chunk.usage is not None][-1]
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == REASONING_TOKENS

    # Routed (no router loaded here: the default tier, small), it is answered without them.
    raw = await api.chat.completions.with_raw_response.create(model="router", messages=USER, reasoning_effort="high")
    assert raw.headers["x-slm-router-tier"] == "small"
    assert raw.headers["x-slm-router-dropped-params"] == "reasoning_effort"
    assert small.requests[-1].reasoning_effort is None
    assert "completion_tokens_details" not in raw.http_response.json()["usage"]  # nothing to report

    # Named, the small model refuses it, as OpenAI refuses it for a model without reasoning.
    with pytest.raises(openai.BadRequestError) as refused:
        await api.chat.completions.create(model="small-model", messages=USER, reasoning_effort="high")
    error = refused.value.body
    assert isinstance(error, dict)
    assert (error["param"], error["code"]) == ("reasoning_effort", "unsupported_parameter")
    assert "fake-large" in error["message"]


async def test_the_responses_api_sends_and_reports_them(app: App, upstream_behaviour: UpstreamBehaviour) -> None:
    client, _, _ = app
    api = sdk(client)
    response = await api.responses.create(
        model="fake-large", input="Why is the sky blue?", reasoning={"effort": "minimal"}, text={"verbosity": "high"}
    )
    sent = upstream_behaviour.requests[-1]
    assert (sent["reasoning_effort"], sent["verbosity"]) == ("minimal", "high")
    assert response.reasoning is not None and response.reasoning.effort == "minimal"
    assert response.text is not None and response.text.verbosity == "high"
    assert response.usage is not None and response.usage.output_tokens_details.reasoning_tokens == REASONING_TOKENS

    # The small tier answered without them: the response reports the defaults in effect.
    routed = await api.responses.create(model="router", input="Hi", reasoning={"effort": "high"})
    assert routed.reasoning is not None and routed.reasoning.effort is None
    assert routed.text is not None and routed.text.verbosity == "medium"

    with pytest.raises(openai.BadRequestError) as refused:
        await api.responses.create(model="small-model", input="Hi", reasoning={"effort": "high"})
    assert isinstance(refused.value.body, dict) and refused.value.body["param"] == "reasoning.effort"


async def test_a_hosted_vllm_server_takes_vllms_decoding_extensions(
    make_app: AppFactory,
    redis_server: EmbeddedRedis,
    fake_upstream: FakeOpenAIUpstream,
    upstream_behaviour: UpstreamBehaviour,
) -> None:
    # A tier whose upstream is a vLLM server (vllm_decoding: true) is sent structured_outputs
    # and the rest; without the flag the same request naming it is refused.
    constrained = {"structured_outputs": {"choice": ["yes", "no"]}, "stop_token_ids": [2]}
    for flag, status in ((True, 200), (False, 400)):
        large = hosted_tier_settings(fake_upstream.base_url, vllm_decoding=flag)
        config = gateway_config(redis_server.url, fake_upstream.base_url, tiers={"large": large})
        async with make_app(config) as (client, _):
            body = {"model": "fake-large", "messages": USER, **constrained}
            answer = await client.post("/v1/chat/completions", json=body)
            assert answer.status_code == status, answer.text
            if flag:
                sent = upstream_behaviour.requests[-1]
                assert {name: sent.get(name) for name in constrained} == constrained
            else:
                assert answer.json()["error"]["param"] == "structured_outputs"
