"""``slm-router label`` against a real OpenAI-compatible server on loopback (scripted models).

The fake serves three models by name: ``small`` and ``large`` answer from a script, and
``judge`` grades the answer it is shown. Each test checks the label file the command writes,
as ``slm-router train --labels`` reads it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.redis_server import EmbeddedRedis
from gateway.serving import HEADER_MODEL
from router_models.cli import main as router_cli
from router_models.labelling import _ANSWERED_BY, Endpoint, Labeller, label_file, read_prompts
from router_models.labels import load_labels
from tests.fakes.engines import ScriptedEngine
from tests.fakes.openai_upstream import FakeOpenAIUpstream, UpstreamBehaviour
from tests.integration.conftest import AppFactory, gateway_config, sdk

ANSWERS = {
    "What is 2+2?": {"small": "4", "large": "2 + 2 = 4"},
    "What is 6*7?": {"small": "6*7 is 41", "large": "The answer is 42 (right)"},
    "Pick one.\nA. x\nB. y\nC. z\nAnswer:": {"small": "Answer: C (right)", "large": "Answer: B"},
}
PROMPTS: list[dict[str, Any]] = [
    {"prompt": "What is 2+2?", "reference": 4},
    {"prompt": "What is 6*7?", "reference": "42"},
    {
        "messages": [
            {"role": "system", "content": "Answer with a letter."},
            {"role": "user", "content": [{"type": "text", "text": "Pick one.\nA. x\nB. y\nC. z\nAnswer:"}]},
        ],
        "reference": "C",
    },
    {"messages": [{"role": "user", "content": "What is 2+2?"}], "reference": "4"},  # the first one again
]
# (weak_correct, strong_correct) by question, graded against the references above.
EXPECTED = {"What is 2+2?": (True, True), "What is 6*7?": (False, True), "Pick one.": (True, False)}


def _last_user_text(body: dict[str, Any]) -> str:
    content = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
    return content if isinstance(content, str) else "".join(p["text"] for p in content)


def _reply(body: dict[str, Any]) -> str:
    if body["model"] == "judge":
        answer = _last_user_text(body).split("[Assistant's answer]\n", 1)[1]
        if "2 + 2" in answer:
            return "I would rather not say."  # no verdict
        return "CORRECT" if "(right)" in answer or answer.strip() == "4" else "INCORRECT"
    return ANSWERS[_last_user_text(body)][body["model"]]


@pytest.fixture
def upstream() -> Iterator[FakeOpenAIUpstream]:
    server = FakeOpenAIUpstream(UpstreamBehaviour(reply=_reply)).start()
    yield server
    server.stop()


def _write(path: Path, items: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    return path


def _label(upstream: FakeOpenAIUpstream, prompts: Path, out: Path, *extra: str) -> int:
    argv = ["label", "--prompts", str(prompts), "--out", str(out), "--base-url", upstream.base_url]
    return router_cli([*argv, "--weak", "small", "--strong", "large", "--retries", "0", "--quiet", *extra])


def _lines(out: Path) -> dict[str, dict[str, Any]]:
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    by_question = {}
    for line in lines:
        text = line["prompt"] if "prompt" in line else line["messages"][-1]["content"][0]["text"]
        by_question[next(q for q in EXPECTED if text.startswith(q))] = line
    assert len(by_question) == len(lines), "a prompt was written twice"
    return by_question


def test_labels_by_reference_are_the_training_format(
    upstream: FakeOpenAIUpstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "labels.jsonl"
    assert _label(upstream, _write(tmp_path / "prompts.jsonl", PROMPTS), out) == 0
    lines = _lines(out)
    assert {q: (line["weak_correct"], line["strong_correct"]) for q, line in lines.items()} == EXPECTED
    assert lines["What is 6*7?"]["weak_answer"] == "6*7 is 41"
    assert lines["What is 6*7?"]["strong_answer"] == "The answer is 42 (right)"
    assert lines["What is 2+2?"]["reference"] == "4"
    assert {line["grader"] for line in lines.values()} == {"reference"}
    # The conversation is kept as the client sent it (system turn and content parts).
    assert lines["Pick one."]["messages"] == PROMPTS[2]["messages"]
    # Six answers (3 prompts x 2 models), no judge, deterministic, with the answer cap.
    bodies = upstream.behaviour.requests
    assert sorted(b["model"] for b in bodies) == ["large"] * 3 + ["small"] * 3
    assert {(b["temperature"], b["max_tokens"]) for b in bodies} == {(0, 1024)}
    report = capsys.readouterr().out
    assert "3 labelled now, 0 already there, 0 failed, 1 repeated prompts skipped (grader: reference)" in report
    # What the command wrote trains: the label reader takes it, extra audit fields and all.
    data = load_labels([out])
    assert len(data) == 3 and int(data.weak.sum()) == 2 and int(data.strong.sum()) == 2
    assert data.turns is not None and any(len(turns) == 2 for turns in data.turns)


def test_failures_are_left_out_and_a_rerun_labels_only_them(
    upstream: FakeOpenAIUpstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = _write(tmp_path / "prompts.jsonl", PROMPTS)
    out = tmp_path / "labels.jsonl"
    # The large model fails on 6*7 (HTTP 500), and the judge gives no verdict on "2 + 2 = 4".
    upstream.behaviour.fail_when = lambda body: body["model"] == "large" and "6*7" in _last_user_text(body)
    assert _label(upstream, prompts, out, "--judge", "judge") == 1
    captured = capsys.readouterr()
    assert f"failed {prompts}:1: judge gave no verdict: 'I would rather not say.'" in captured.err
    assert f"failed {prompts}:2: strong model 'large': Error code: 500 - injected failure" in captured.err
    assert {b["max_tokens"] for b in upstream.behaviour.requests if b["model"] == "judge"} == {16}
    lines = _lines(out)
    assert list(lines) == ["Pick one."]  # nothing guessed for the two that failed
    assert lines["Pick one."]["grader"] == "judge:judge"
    assert (lines["Pick one."]["weak_correct"], lines["Pick one."]["strong_correct"]) == (True, False)

    # The replies that did arrive are kept for the rerun: both answers to 2+2 and the small
    # model's to 6*7 (its call was not cancelled when the large one failed).
    replies = out.with_name("labels.jsonl.replies")
    assert f"replies that did arrive, in {out}.replies" in captured.err
    assert len(replies.read_text(encoding="utf-8").splitlines()) >= 3

    upstream.behaviour.fail_when = None
    upstream.behaviour.reply = lambda body: "CORRECT" if body["model"] == "judge" else _reply(body)
    upstream.behaviour.requests.clear()
    assert _label(upstream, prompts, out, "--judge", "judge", "--judge-max-tokens", "200") == 0
    report = capsys.readouterr().out
    assert "2 labelled now, 1 already there, 0 failed" in report
    assert "3 replies reused from the earlier run" in report
    assert {b["max_tokens"] for b in upstream.behaviour.requests if b["model"] == "judge"} == {200}
    # Only the failed answer is asked again (the judge too: its token cap changed).
    asked = [(b["model"], _last_user_text(b)) for b in upstream.behaviour.requests if b["model"] != "judge"]
    assert asked == [("large", "What is 6*7?")]
    lines = _lines(out)
    assert set(lines) == set(EXPECTED)
    assert (lines["What is 6*7?"]["weak_correct"], lines["What is 6*7?"]["strong_correct"]) == (True, True)
    assert lines["What is 2+2?"]["strong_answer"] == "2 + 2 = 4"  # the reused answer, as first given
    assert not replies.exists()  # every reply is in the label file now


def test_a_verdict_is_reused_and_a_reply_without_one_is_asked_again(
    upstream: FakeOpenAIUpstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = _write(tmp_path / "prompts.jsonl", PROMPTS[:1])
    out = tmp_path / "labels.jsonl"
    assert _label(upstream, prompts, out, "--judge", "judge") == 1  # no verdict on "2 + 2 = 4"
    upstream.behaviour.reply = lambda body: "CORRECT" if body["model"] == "judge" else _reply(body)
    upstream.behaviour.requests.clear()
    assert _label(upstream, prompts, out, "--judge", "judge") == 0
    # Both answers and the verdict on "4" came from the first run; only the judge's refusal is retried.
    assert "3 replies reused from the earlier run" in capsys.readouterr().out
    [asked] = upstream.behaviour.requests
    assert asked["model"] == "judge" and "[Assistant's answer]\n2 + 2 = 4\n" in _last_user_text(asked)
    # The weak verdict is the first run's (that judge read "4\n\nIs the..." as wrong), not the
    # rerun judge's CORRECT: it was not asked again.
    line = _lines(out)["What is 2+2?"]
    assert (line["weak_correct"], line["strong_correct"]) == (False, True)


def test_the_tools_a_conversation_offered_reach_both_models_and_the_label(
    upstream: FakeOpenAIUpstream, tmp_path: Path
) -> None:
    calc = {"type": "function", "function": {"name": "calc", "parameters": {"type": "object", "properties": {}}}}
    line = {"prompt": "What is 6*7?", "reference": "42", "tools": [calc], "tool_choice": "auto"}
    out = tmp_path / "labels.jsonl"
    assert _label(upstream, _write(tmp_path / "prompts.jsonl", [line, PROMPTS[0]]), out) == 0
    offered = [b for b in upstream.behaviour.requests if "tools" in b]
    assert sorted(b["model"] for b in offered) == ["large", "small"]
    assert all(b["tools"] == [calc] and b["tool_choice"] == "auto" for b in offered)
    written = _lines(out)["What is 6*7?"]
    assert "tools" not in _lines(out)["What is 2+2?"]  # none offered, none written
    assert written["tools"] == [calc] and written["tool_choice"] == "auto"
    # The fake calls the offered tool; the call is the answer that was graded (not "42").
    assert written["weak_answer"].startswith("calc(") and written["strong_answer"].startswith("calc(")
    assert (written["weak_correct"], written["strong_correct"]) == (False, False)
    assert len(load_labels([out])) == 2  # training reads past the tools


def test_a_reasoning_judge_gets_only_the_parameters_it_takes(upstream: FakeOpenAIUpstream, tmp_path: Path) -> None:
    # OpenAI's reasoning models refuse temperature (other than the default) and max_tokens.
    upstream.behaviour.fail_when = lambda body: (
        body["model"] == "judge" and ("temperature" in body or "max_tokens" in body)
    )
    prompts = _write(tmp_path / "prompts.jsonl", PROMPTS[1:3])
    assert _label(upstream, prompts, tmp_path / "plain.jsonl", "--judge", "judge") == 1  # refused
    upstream.behaviour.requests.clear()
    out = tmp_path / "labels.jsonl"
    assert _label(upstream, prompts, out, "--judge", "judge", "--judge-reasoning") == 0
    judged = [b for b in upstream.behaviour.requests if b["model"] == "judge"]
    assert len(judged) == 4 and all(
        "temperature" not in b and "max_tokens" not in b and b["max_completion_tokens"] == 4096 for b in judged
    )
    answered = [b for b in upstream.behaviour.requests if b["model"] != "judge"]
    assert all(b["temperature"] == 0 and b["max_tokens"] == 1024 for b in answered)  # the tiers are unchanged
    assert set(_lines(out)) == {"What is 6*7?", "Pick one."}


def test_a_line_cut_short_by_a_crash_is_relabelled(upstream: FakeOpenAIUpstream, tmp_path: Path) -> None:
    prompts = _write(tmp_path / "prompts.jsonl", PROMPTS[:2])
    out = tmp_path / "labels.jsonl"
    assert _label(upstream, _write(tmp_path / "first.jsonl", PROMPTS[:1]), out) == 0
    whole = out.read_text(encoding="utf-8")
    out.write_text(whole + '{"prompt": "What is 6*7?", "weak_corr', encoding="utf-8")
    assert _label(upstream, prompts, out) == 0
    assert out.read_text(encoding="utf-8").startswith(whole)
    assert set(_lines(out)) == {"What is 2+2?", "What is 6*7?"}
    assert len(load_labels([out])) == 2


@pytest.mark.parametrize(
    ("line", "extra", "message"),
    [
        ({"prompt": "What is 2+2?"}, (), "no 'reference' to grade against; give one or name a --judge"),
        ({"prompt": "hi", "answer": "4"}, ("--judge", "judge"), "unknown field(s) answer"),
        ({"prompt": "hi", "reference": True}, (), "'reference' must be a string or a number"),
        ({"messages": []}, (), "'messages' must be a non-empty list"),
        ({"prompt": "hi", "reference": "1", "tool_choice": "auto"}, (), "'tool_choice' needs 'tools'"),
        ({"prompt": "hi", "reference": "1", "tools": [{"type": "function"}]}, (), "tools[0] must be"),
        ({"prompt": "hi", "reference": "1", "tools": []}, (), "'tools' must be a non-empty list"),
    ],
)
def test_bad_prompt_files_fail_before_any_call(
    upstream: FakeOpenAIUpstream,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    line: dict[str, Any],
    extra: tuple[str, ...],
    message: str,
) -> None:
    prompts = _write(tmp_path / "prompts.jsonl", [{"prompt": "ok", "reference": "1"}, line])
    assert _label(upstream, prompts, tmp_path / "labels.jsonl", *extra) == 2
    assert f"error: {prompts}:2: {message}" in capsys.readouterr().err
    assert upstream.behaviour.requests == []
    assert not (tmp_path / "labels.jsonl").exists()


async def test_through_the_gateway_each_label_comes_from_the_tier_it_names(
    make_app: AppFactory,
    redis_server: EmbeddedRedis,
    fake_upstream: FakeOpenAIUpstream,
    upstream_behaviour: UpstreamBehaviour,
    tmp_path: Path,
) -> None:
    assert _ANSWERED_BY == HEADER_MODEL  # router_models does not import the gateway; keep them equal
    upstream_behaviour.reply = lambda body: "Paris" if "France" in _last_user_text(body) else "4"
    prompts: list[dict[str, Any]] = [
        {"prompt": "What is 2+2?", "reference": 4},
        {"prompt": "The capital of France?", "reference": "Paris"},
    ]
    items, _ = read_prompts(_write(tmp_path / "prompts.jsonl", prompts), need_reference=True)
    config = gateway_config(redis_server.url, fake_upstream.base_url)
    async with make_app(config, small=ScriptedEngine(["4"], model="small-model")) as (client, _):
        api = sdk(client)
        out = tmp_path / "labels.jsonl"
        labeller = Labeller(Endpoint(api, "small-model"), Endpoint(api, "fake-large"), None, 64)
        await label_file(items, labeller, out, concurrency=2, progress=False)
        assert labeller.report.failed == []
        lines = {line["prompt"]: line for line in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
        assert {p: (line["weak_correct"], line["strong_correct"]) for p, line in lines.items()} == {
            "What is 2+2?": (True, True),
            "The capital of France?": (False, True),
        }
        assert lines["The capital of France?"]["strong_answer"] == "Paris"
        assert labeller.report.tokens["weak"][0] > 0 and labeller.report.tokens["strong"][0] > 0

        # The virtual model routes: its answers would come from either tier, so no label is made.
        routed = tmp_path / "routed.jsonl"
        labeller = Labeller(Endpoint(api, "router"), Endpoint(api, "fake-large"), None, 64)
        await label_file(items, labeller, routed, concurrency=2, progress=False)
        assert len(labeller.report.failed) == 2
        assert all("weak model 'router' was answered by 'small-model'" in why for _, why in labeller.report.failed)
        assert routed.read_text(encoding="utf-8") == ""


async def test_a_malformed_answer_fails_its_prompt_not_the_run(tmp_path: Path) -> None:
    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        await receive()
        body = {"id": "x", "choices": "not a list"}  # what a broken proxy might send, status 200
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})

    transport = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
    api = openai.AsyncOpenAI(base_url="http://broken/v1", api_key="k", http_client=transport, max_retries=0)
    items, _ = read_prompts(_write(tmp_path / "prompts.jsonl", PROMPTS[:2]), need_reference=True)
    labeller = Labeller(Endpoint(api, "small"), Endpoint(api, "large"), None, 16)
    await label_file(items, labeller, tmp_path / "labels.jsonl", concurrency=2, progress=False)
    assert [where.rsplit(":", 1)[1] for where, _ in labeller.report.failed] == ["1", "2"]
    for _, why in labeller.report.failed:
        assert re.fullmatch(
            r"(weak model 'small'|strong model 'large') sent a malformed response "
            r"\(\d+ validation errors? for ChatCompletion\)",
            why,
        ), why
    assert (tmp_path / "labels.jsonl").read_text(encoding="utf-8") == ""
    await transport.aclose()


@pytest.mark.parametrize("option", ["--concurrency", "--max-tokens", "--judge-max-tokens"])
def test_limits_below_one_are_refused(
    upstream: FakeOpenAIUpstream, tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    prompts = _write(tmp_path / "prompts.jsonl", PROMPTS[:1])
    assert _label(upstream, prompts, tmp_path / "labels.jsonl", option, "0") == 2
    assert "must be >= 1" in capsys.readouterr().err
    assert upstream.behaviour.requests == []
