"""The large tier's litellm engine against a real local OpenAI-compatible server."""

from __future__ import annotations

import pytest

from deployments.litellm_engine import LiteLLMChatEngine
from gateway.config import LiteLLMTierConfig
from gateway.engine import GenerationRequest
from gateway.errors import GatewayError, ServiceUnavailableError, UpstreamError, UpstreamTimeoutError
from tests.fakes.openai_upstream import FakeOpenAIUpstream, UpstreamBehaviour


def engine(upstream: FakeOpenAIUpstream, **overrides: object) -> LiteLLMChatEngine:
    settings: dict[str, object] = {
        "served_model_name": "fake-large",
        "model": "openai/fake-large",
        "api_base": upstream.base_url,
        "api_key_env": "SLM_TEST_UPSTREAM_KEY",
        "timeout_s": 2,
        "num_retries": 0,
    }
    settings.update(overrides)
    return LiteLLMChatEngine(LiteLLMTierConfig.model_validate(settings))


def gen(text: str = "hello world", max_tokens: int = 100) -> GenerationRequest:
    return GenerationRequest(
        "req-1", [{"role": "user", "content": text}], max_tokens=max_tokens, temperature=0.1, stop=["zz"]
    )


async def test_complete_and_parameters(
    fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour
) -> None:
    eng = engine(fake_upstream)
    await eng.start()
    completion = await eng.complete(gen())
    assert completion.text == "large says: hello world"
    assert completion.model == "fake-large"
    assert (completion.prompt_tokens, completion.completion_tokens) == (2, 4)
    sent = upstream_behaviour.requests[-1]
    assert sent["temperature"] == 0.1 and sent["stop"] == ["zz"] and sent["max_tokens"] == 100
    assert upstream_behaviour.headers_seen[-1]["authorization"] == "Bearer sk-test-not-a-secret"


async def test_stream_reports_usage_from_the_final_chunk(
    fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour
) -> None:
    eng = engine(fake_upstream)
    deltas = [d async for d in eng.stream(gen("a b c", max_tokens=4))]
    assert "".join(d.text for d in deltas) == "large says: a b"
    assert deltas[-1].finish_reason == "length"
    assert deltas[-1].completion_tokens == 4 and deltas[-1].prompt_tokens == 3
    assert upstream_behaviour.requests[-1]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("status", "expected", "code"),
    [
        (500, UpstreamError, "upstream_error"),
        (401, UpstreamError, "upstream_auth_failed"),
        (503, ServiceUnavailableError, "service_unavailable"),
        (429, ServiceUnavailableError, "upstream_rate_limited"),
    ],
)
async def test_upstream_errors_map_to_the_tree(
    fake_upstream: FakeOpenAIUpstream,
    upstream_behaviour: UpstreamBehaviour,
    status: int,
    expected: type[GatewayError],
    code: str,
) -> None:
    upstream_behaviour.fail_status = status
    with pytest.raises(expected) as info:
        await engine(fake_upstream).complete(gen())
    assert info.value.code == code
    assert "sk-test" not in info.value.message


async def test_hang_becomes_timeout(fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour) -> None:
    upstream_behaviour.hang = True
    with pytest.raises(UpstreamTimeoutError):
        await engine(fake_upstream, timeout_s=1).complete(gen())


async def test_retries_back_off_exponentially(
    fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour
) -> None:
    import time

    upstream_behaviour.fail_status = 500
    started = time.monotonic()
    with pytest.raises(UpstreamError):
        await engine(fake_upstream, num_retries=2, retry_backoff_s=0.2).complete(gen())
    assert len(upstream_behaviour.requests) == 3
    assert time.monotonic() - started >= 0.6  # waited 0.2 s, then 0.4 s


async def test_auth_failures_are_not_retried(
    fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour
) -> None:
    upstream_behaviour.fail_status = 401
    with pytest.raises(UpstreamError):
        await engine(fake_upstream, num_retries=3, retry_backoff_s=0.01).complete(gen())
    assert len(upstream_behaviour.requests) == 1
