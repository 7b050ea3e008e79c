"""The sampling controls and the Completions API against the real small model through Ray Serve:
``logit_bias`` (in its tokenizer's ids), ``/v1/completions`` (raw prompts, no chat template),
vLLM's own sampling extensions (what ``vllm bench serve`` sends) and its structured outputs."""

from __future__ import annotations

import re
from typing import Any

import openai
import pytest

from tests.serve.test_openai_sdk import SMALL


@pytest.fixture(scope="module")
def small_tokenizer() -> Any:
    from transformers import AutoTokenizer

    from gateway.local_models import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path("builtin:smollm2-135m-instruct"))


@pytest.mark.parametrize("model", [SMALL, "local-large-standin"])
def test_logit_bias_steers_the_real_engine(client: openai.OpenAI, small_tokenizer: Any, model: str) -> None:
    # Keys are the small model's token ids; the stand-in tier carries them through litellm.
    question = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    banana = small_tokenizer.encode(" banana", add_special_tokens=False)[0]
    forced = client.chat.completions.create(
        model=model, messages=question, max_tokens=3, temperature=0, logit_bias={str(banana): 100}
    )
    assert forced.choices[0].message.content == small_tokenizer.decode([banana] * 3)
    paris = {
        token
        for word in ("Paris", " Paris", "paris")
        for token in small_tokenizer.encode(word, add_special_tokens=False)[:1]
    }
    plain = client.chat.completions.create(model=model, messages=question, max_tokens=8, temperature=0)
    assert "Paris" in (plain.choices[0].message.content or "")
    banned = client.chat.completions.create(
        model=model, messages=question, max_tokens=8, temperature=0, logit_bias={str(t): -100 for t in paris}
    )
    assert "Paris" not in (banned.choices[0].message.content or "")
    # An id outside the vocabulary is the client's 400, named (vLLM's own check).
    with pytest.raises(openai.BadRequestError) as outside:
        client.chat.completions.create(model=model, messages=question, max_tokens=3, logit_bias={"999999999": 1})
    assert outside.value.param == "logit_bias"


def test_completions_continue_a_raw_prompt_on_the_real_engine(client: openai.OpenAI, small_tokenizer: Any) -> None:
    prompt = "The capital of France is"
    raw = client.completions.with_raw_response.create(model=SMALL, prompt=prompt, max_tokens=5, temperature=0)
    completion = raw.parse()
    text = completion.choices[0].text
    assert "Paris" in text, text
    assert raw.headers["x-slm-router-tier"] == "small" and completion.object == "text_completion"
    # No chat template: the prompt is its own tokens only (a chat turn would add the template's).
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == len(small_tokenizer.encode(prompt))
    streamed = client.completions.create(model=SMALL, prompt=prompt, max_tokens=5, temperature=0, stream=True)
    assert "".join(chunk.choices[0].text for chunk in streamed if chunk.choices) == text
    scored = client.completions.create(model=SMALL, prompt=prompt, max_tokens=5, temperature=0, logprobs=2)
    logprobs = scored.choices[0].logprobs
    assert logprobs is not None and logprobs.tokens and logprobs.token_logprobs and logprobs.top_logprobs
    assert "".join(logprobs.tokens).startswith(text)
    assert all(len(top) <= 2 and max(top.values()) <= 0 for top in logprobs.top_logprobs)
    # Routed, whatever the score: only the vLLM tier completes text.
    routed = client.completions.with_raw_response.create(model="router", prompt="Prove that 17 is prime.", max_tokens=3)
    assert routed.headers["x-slm-router-tier"] == "small"
    with pytest.raises(openai.BadRequestError) as chat_only:
        client.completions.create(model="fake-large", prompt=prompt, max_tokens=3)
    assert chat_only.value.param == "model"


def test_vllms_sampling_extensions_on_the_real_engine(client: openai.OpenAI) -> None:
    # What `vllm bench serve` sends: ignore_eos makes every answer max_tokens long.
    ask = {"model": SMALL, "messages": [{"role": "user", "content": "Reply with the word OK only."}], "temperature": 0}
    short = client.chat.completions.create(**ask, max_tokens=40)  # type: ignore[call-overload]
    assert short.choices[0].finish_reason == "stop" and short.usage is not None
    assert short.usage.completion_tokens < 40
    longer = client.chat.completions.create(**ask, max_tokens=40, extra_body={"ignore_eos": True})  # type: ignore[call-overload]
    assert longer.choices[0].finish_reason == "length" and longer.usage is not None
    assert longer.usage.completion_tokens == 40
    floor = short.usage.completion_tokens + 5
    at_least = client.chat.completions.create(**ask, max_tokens=40, extra_body={"min_tokens": floor})  # type: ignore[call-overload]
    assert at_least.usage is not None and at_least.usage.completion_tokens >= floor
    benched = client.completions.create(
        model=SMALL, prompt="Hello", max_tokens=24, temperature=0, extra_body={"ignore_eos": True}
    )
    assert benched.usage is not None and benched.usage.completion_tokens == 24


def test_vllms_structured_outputs_hold_the_real_engine(client: openai.OpenAI) -> None:
    # The way a small model is held to a label set, a format or a grammar (vLLM's extension).
    ask = {"messages": [{"role": "user", "content": "Is 'I loved it' positive or negative?"}], "temperature": 0}
    labels = ["positive", "negative", "neutral"]
    for model in (SMALL, "router"):
        chosen = client.chat.completions.create(  # type: ignore[call-overload]
            model=model, **ask, max_tokens=8, extra_body={"structured_outputs": {"choice": labels}}
        )
        assert chosen.choices[0].message.content in labels
    digits = client.chat.completions.create(  # type: ignore[call-overload]
        model=SMALL, **ask, max_tokens=12, extra_body={"structured_outputs": {"regex": "[0-9]{3}-[0-9]{4}"}}
    )
    assert re.fullmatch(r"[0-9]{3}-[0-9]{4}", digits.choices[0].message.content or "")
    grammar = 'root ::= "yes" | "no"'
    answered = client.completions.create(
        model=SMALL,
        prompt="Is water wet? Answer:",
        max_tokens=4,
        extra_body={"structured_outputs": {"grammar": grammar}},
    )
    assert answered.choices[0].text in ("yes", "no")
    # A grammar vLLM's backend cannot compile is the client's 400, named, not a 502.
    with pytest.raises(openai.BadRequestError) as broken:
        client.chat.completions.create(  # type: ignore[call-overload]
            model=SMALL, **ask, max_tokens=4, extra_body={"structured_outputs": {"grammar": "root ::= ("}}
        )
    assert broken.value.param == "structured_outputs"


def test_vllms_token_extensions_on_the_real_engine(client: openai.OpenAI, small_tokenizer: Any) -> None:
    # stop_token_ids ends the answer at a token of the model's own; allowed_token_ids keeps it
    # to a few; bad_words bans a word (each a vLLM extension, served only by the vLLM tier).
    count = [{"role": "user", "content": "Count from 1 to 9, separated by spaces."}]
    plain = client.chat.completions.create(model=SMALL, messages=count, max_tokens=30, temperature=0)  # type: ignore[arg-type]
    text = plain.choices[0].message.content or ""
    assert "5" in text and "7" in text
    five = small_tokenizer.encode("5", add_special_tokens=False)
    assert len(five) == 1
    stopped = client.chat.completions.create(  # type: ignore[call-overload]
        model=SMALL, messages=count, max_tokens=30, temperature=0, extra_body={"stop_token_ids": five}
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert "7" not in (stopped.choices[0].message.content or "")
    allowed = [small_tokenizer.encode(word, add_special_tokens=False)[0] for word in ("yes", "no")]
    kept = client.chat.completions.create(  # type: ignore[call-overload]
        model=SMALL, messages=count, max_tokens=6, temperature=0, extra_body={"allowed_token_ids": allowed}
    )
    assert set((kept.choices[0].message.content or "").replace("yes", "").replace("no", "")) <= {""}
    banned = client.chat.completions.create(  # type: ignore[call-overload]
        model=SMALL, messages=count, max_tokens=30, temperature=0, extra_body={"bad_words": ["5"]}
    )
    assert "5" not in (banned.choices[0].message.content or "")
    # An id outside the model's vocabulary is the client's 400, naming the list.
    for name in ("stop_token_ids", "allowed_token_ids"):
        with pytest.raises(openai.BadRequestError) as outside:
            client.chat.completions.create(  # type: ignore[call-overload]
                model=SMALL, messages=count, max_tokens=4, extra_body={name: [10**9]}
            )
        assert outside.value.param == name
