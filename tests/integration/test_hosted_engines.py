"""The hosted tier's engines (litellm and the direct OpenAI-protocol client) against a real local server.

Both transports must behave the same: same requests upstream, same errors, same retries.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from gateway.engine import ChatEngine, GenerationRequest
from gateway.errors import (
    GatewayError,
    InvalidRequestError,
    ModelRefusedParameterError,
    ServiceUnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
)
from gateway.serving import failover_reason
from tests.fakes.openai_upstream import REASONING_TOKENS, FakeOpenAIUpstream, UpstreamBehaviour
from tests.integration.conftest import hosted_engine


@pytest.fixture(params=["litellm", "openai"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def engine(upstream: FakeOpenAIUpstream, transport: str, **overrides: object) -> ChatEngine:
    return hosted_engine(upstream.base_url, transport, **{"timeout_s": 2, **overrides})


def gen(text: str = "hello world", max_tokens: int = 100) -> GenerationRequest:
    return GenerationRequest(
        "req-1", [{"role": "user", "content": text}], max_tokens=max_tokens, temperature=0.1, stop=["zz"]
    )


async def test_complete_and_parameters(
    fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour, transport: str
) -> None:
    eng = engine(fake_upstream, transport)
    await eng.start()
    completion = await eng.complete(gen())
    assert completion.text == "large says: hello world"
    assert completion.model == "fake-large"
    assert (completion.prompt_tokens, completion.completion_tokens) == (2, 4)
    sent = upstream_behaviour.requests[-1]
    assert sent["temperature"] == 0.1 and sent["stop"] == ["zz"] and sent["max_tokens"] == 100
    assert upstream_behaviour.headers_seen[-1]["authorization"] == "Bearer sk-test-not-a-secret"


async def test_the_token_cap_goes_in_the_field_the_tier_names(
    fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour, transport: str
) -> None:
    # OpenAI's reasoning models refuse max_tokens; a tier for one sends max_completion_tokens.
    eng = engine(fake_upstream, transport, max_tokens_param="max_completion_tokens")
    await eng.start()
    completion = await eng.complete(gen("a b c d e f", max_tokens=3))
    assert completion.finish_reason == "length"
    sent = upstream_behaviour.requests[-1]
    assert sent["max_completion_tokens"] == 3 and "max_tokens" not in sent


async def test_reasoning_effort_and_verbosity_reach_the_upstream(
    fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour, transport: str
) -> None:
    eng = engine(fake_upstream, transport, model_params=["reasoning_effort", "verbosity"])
    await eng.start()
    request = dataclasses.replace(gen(), reasoning_effort="low", verbosity="high")
    await eng.complete(request)
    sent = upstream_behaviour.requests[-1]
    assert (sent["reasoning_effort"], sent["verbosity"]) == ("low", "high")
    await eng.complete(gen())
    assert "reasoning_effort" not in upstream_behaviour.requests[-1]


async def test_vllm_extensions_reach_a_vllm_server_behind_a_hosted_tier(
    fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour, transport: str
) -> None:
    eng = engine(fake_upstream, transport, model_params=["ignore_eos", "top_k", "min_tokens"])
    await eng.start()
    await eng.complete(dataclasses.replace(gen(), ignore_eos=True, top_k=20, min_tokens=2))
    sent = upstream_behaviour.requests[-1]
    assert (sent["ignore_eos"], sent["top_k"], sent["min_tokens"]) == (True, 20, 2)


async def test_vllm_decoding_extensions_reach_a_vllm_server_behind_a_hosted_tier(
    fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour, transport: str
) -> None:
    eng = engine(fake_upstream, transport, vllm_decoding=True)
    await eng.start()
    extensions = {
        "structured_outputs": {"choice": ["yes", "no"]},
        "stop_token_ids": [2],
        "allowed_token_ids": [5, 6],
        "bad_words": ["darn"],
    }
    await eng.complete(dataclasses.replace(gen(), **extensions))
    sent = upstream_behaviour.requests[-1]
    assert {name: sent.get(name) for name in extensions} == extensions
    await eng.complete(gen())
    assert not set(extensions) & set(upstream_behaviour.requests[-1])


async def test_reasoning_and_cached_tokens_come_back_in_the_usage(
    fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour, transport: str
) -> None:
    # A reasoning model counts its thinking in completion_tokens and says how many it was.
    upstream_behaviour.cached_tokens = 2
    eng = engine(fake_upstream, transport, model_params=["reasoning_effort"])
    await eng.start()
    request = dataclasses.replace(gen(), reasoning_effort="low")
    completion = await eng.complete(request)
    assert (completion.completion_tokens, completion.reasoning_tokens, completion.cached_tokens) == (
        4 + REASONING_TOKENS,
        REASONING_TOKENS,
        2,
    )
    deltas = [delta async for delta in eng.stream(request)]
    assert (deltas[-1].completion_tokens, deltas[-1].reasoning_tokens, deltas[-1].cached_tokens) == (
        4 + REASONING_TOKENS,
        REASONING_TOKENS,
        2,
    )
    upstream_behaviour.cached_tokens = 0
    plain = await eng.complete(gen())
    assert (plain.reasoning_tokens, plain.cached_tokens) == (0, 0)


async def test_logit_bias_reaches_the_upstream(
    fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour, transport: str
) -> None:
    eng = engine(fake_upstream, transport)
    await eng.start()
    await eng.complete(dataclasses.replace(gen(), logit_bias={"50256": -100.0, "9891": 5.5}))
    assert upstream_behaviour.requests[-1]["logit_bias"] == {"50256": -100.0, "9891": 5.5}


async def test_stream_reports_usage_from_the_final_chunk(
    fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour, transport: str
) -> None:
    eng = engine(fake_upstream, transport)
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
    transport: str,
    status: int,
    expected: type[GatewayError],
    code: str,
) -> None:
    upstream_behaviour.fail_status = status
    with pytest.raises(expected) as info:
        await engine(fake_upstream, transport).complete(gen())
    assert info.value.code == code
    assert "sk-test" not in info.value.message


async def test_hang_becomes_timeout(
    fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour, transport: str
) -> None:
    upstream_behaviour.hang = True
    with pytest.raises(UpstreamTimeoutError):
        await engine(fake_upstream, transport, timeout_s=1).complete(gen())


async def test_retries_back_off_exponentially(
    fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour, transport: str
) -> None:
    import time

    upstream_behaviour.fail_status = 500
    started = time.monotonic()
    with pytest.raises(UpstreamError):
        await engine(fake_upstream, transport, num_retries=2, retry_backoff_s=0.2).complete(gen())
    assert len(upstream_behaviour.requests) == 3
    assert time.monotonic() - started >= 0.6  # waited 0.2 s, then 0.4 s


async def test_auth_failures_are_not_retried(
    fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour, transport: str
) -> None:
    upstream_behaviour.fail_status = 401
    with pytest.raises(UpstreamError):
        await engine(fake_upstream, transport, num_retries=3, retry_backoff_s=0.01).complete(gen())
    assert len(upstream_behaviour.requests) == 1


async def test_context_overflow_is_the_clients_error(
    fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour, transport: str
) -> None:
    upstream_behaviour.fail_status = 400
    upstream_behaviour.fail_message = "This model's maximum context length is 8192 tokens."
    with pytest.raises(InvalidRequestError) as info:
        await engine(fake_upstream, transport).complete(gen())
    assert info.value.code == "context_length_exceeded"


async def test_trace_context_and_extra_params_reach_the_upstream(
    fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour, transport: str
) -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    request = GenerationRequest(
        "req-2", [{"role": "user", "content": "hi"}], max_tokens=5, trace_headers={"traceparent": traceparent}
    )
    eng = engine(fake_upstream, transport, extra_params={"logit_bias": {"50256": -100}})
    await eng.complete(request)
    assert upstream_behaviour.headers_seen[-1]["traceparent"] == traceparent
    assert upstream_behaviour.requests[-1]["logit_bias"] == {"50256": -100}
    assert upstream_behaviour.requests[-1]["model"] == "fake-large"


async def test_abandoned_stream_releases_the_engine(
    fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour, transport: str
) -> None:
    eng = engine(fake_upstream, transport)
    for _ in range(3):
        stream = eng.stream(gen("one two three four five six"))
        first = await anext(stream)
        assert first.text
        await stream.aclose()  # type: ignore[attr-defined]
    completion = await eng.complete(gen("still works"))
    assert completion.text == "large says: still works"
    await eng.shutdown()


async def test_keyless_upstream_needs_no_configured_key(
    fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour, transport: str
) -> None:
    completion = await engine(fake_upstream, transport, api_key_env=None).complete(gen("no key"))
    assert completion.text == "large says: no key"
    assert "sk-test" not in upstream_behaviour.headers_seen[-1].get("authorization", "")


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "json_object"},
        {
            "type": "json_schema",
            "json_schema": {
                "name": "colours",
                "strict": True,
                "schema": {"type": "object", "properties": {"colours": {"type": "array", "items": {"type": "string"}}}},
            },
        },
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_response_format_reaches_the_upstream(
    fake_upstream: FakeOpenAIUpstream,
    upstream_behaviour: UpstreamBehaviour,
    transport: str,
    response_format: dict[str, object],
    stream: bool,
) -> None:
    request = GenerationRequest(
        "req-3", [{"role": "user", "content": "Colours as JSON"}], max_tokens=50, response_format=response_format
    )
    eng = engine(fake_upstream, transport)
    text = "".join([d.text async for d in eng.stream(request)]) if stream else (await eng.complete(request)).text
    assert upstream_behaviour.requests[-1]["response_format"] == response_format
    # The fake answers in the requested shape, as a hosted model does.
    answer = json.loads(text)
    assert set(answer) == ({"answer"} if response_format["type"] == "json_object" else {"colours"})


@pytest.mark.parametrize(
    ("field", "message"),
    [
        # What OpenAI's reasoning models answer to a temperature (it used to be a bare 502).
        (
            "temperature",
            "Unsupported value: 'temperature' does not support 0.1 with this model. "
            "Only the default (1) value is supported.",
        ),
        # And an effort value a model does not know.
        (
            "reasoning_effort",
            "Unsupported value: 'reasoning_effort' does not support 'minimal' with this model. "
            "Supported values are: 'low', 'medium', and 'high'.",
        ),
    ],
)
async def test_a_model_refusing_a_sampling_field_names_it(
    fake_upstream: FakeOpenAIUpstream,
    upstream_behaviour: UpstreamBehaviour,
    transport: str,
    field: str,
    message: str,
) -> None:
    upstream_behaviour.fail_status = 400
    upstream_behaviour.fail_message = message
    eng = engine(fake_upstream, transport, model_params=["reasoning_effort"])
    with pytest.raises(ModelRefusedParameterError) as info:
        await eng.complete(dataclasses.replace(gen(), reasoning_effort="minimal"))
    assert info.value.status_code == 400 and info.value.param == field
    assert info.value.code == "unsupported_value"
    # The provider's reason reaches the client.
    assert f"refused the {field}" in info.value.message and message in info.value.message
    assert failover_reason(info.value) == "refused"  # a routed request may try another tier


async def test_upstream_refusing_a_schema_is_the_clients_error(
    fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour, transport: str
) -> None:
    upstream_behaviour.fail_status = 400
    upstream_behaviour.fail_message = "Invalid schema for response_format 'x': 'additionalProperties' is required"
    request = GenerationRequest(
        "req-4",
        [{"role": "user", "content": "hi"}],
        max_tokens=5,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
    )
    with pytest.raises(InvalidRequestError) as info:
        await engine(fake_upstream, transport).complete(request)
    assert info.value.param == "response_format"
    assert (
        "refused the response_format" in info.value.message
        and "'additionalProperties' is required" in info.value.message
    )
    assert info.value.status_code == 400
    # Any other 400 is still the gateway's problem (it built the request): 502, open to failover.
    upstream_behaviour.fail_message = "Unrecognized request argument supplied: frobnicate"
    with pytest.raises(UpstreamError):
        await engine(fake_upstream, transport).complete(request)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("top", [0, 2])
async def test_logprobs_reach_the_upstream_and_come_back_per_token(
    fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour, transport: str, stream: bool, top: int
) -> None:
    request = GenerationRequest(
        "req-5", [{"role": "user", "content": "a b"}], max_tokens=50, logprobs=True, top_logprobs=top
    )
    eng = engine(fake_upstream, transport)
    if stream:
        deltas = [d async for d in eng.stream(request)]
        text, tokens = "".join(d.text for d in deltas), [t for d in deltas for t in d.logprobs]
    else:
        completion = await eng.complete(request)
        text, tokens = completion.text, list(completion.logprobs)
    sent = upstream_behaviour.requests[-1]
    assert sent["logprobs"] is True and sent.get("top_logprobs") == (top or None)
    # The fake's tokens are its words: word i has logprob -(i+1)/10 and alternatives "alt<k>".
    assert text == "large says: a b" and "".join(t.token for t in tokens) == text
    assert [t.logprob for t in tokens] == pytest.approx([-0.1, -0.2, -0.3, -0.4])
    assert tokens[0].bytes == list(b"large")
    assert [alt.token for alt in tokens[3].top_logprobs] == [" b", "alt1"][:top]


async def test_no_logprobs_unless_asked(
    fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour, transport: str
) -> None:
    completion = await engine(fake_upstream, transport).complete(gen())
    assert "logprobs" not in upstream_behaviour.requests[-1] and completion.logprobs == ()
