"""Operator-labelled conversations: loading, the serving text shape, training and evaluating on them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.protocol import ChatMessage
from gateway.serving.messages import engine_message
from router_models.artifacts import load_router, read_metadata
from router_models.cli import main
from router_models.conversation import ChatTurn, render_conversation, turn_from_message
from router_models.data import LabeledPrompts, concat
from router_models.errors import RouterDataError
from router_models.labels import LABELS_NAME, load_labels

SYSTEM = "You are a careful assistant for a support desk."
CALL = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def labelled_conversations(data: LabeledPrompts, rows: int, seed: int = 0) -> list[dict[str, Any]]:
    """MMLU prompts dressed as chat traffic: a system turn, an earlier exchange, the question."""
    pick = np.random.default_rng(seed).permutation(len(data))[:rows]
    out = []
    for i in pick:
        messages = [
            {"role": "developer", "content": SYSTEM},
            {"role": "user", "content": [{"type": "text", "text": "Hi, a question for you."}]},
            {"role": "assistant", "content": "Sure, go ahead."},
            {"role": "user", "content": data.prompts[i]},
        ]
        out.append({"messages": messages, "weak_correct": bool(data.weak[i]), "strong_correct": bool(data.strong[i])})
    return out


def test_labelled_conversations_load_as_the_gateway_would_score_them(tmp_path: Path) -> None:
    rows = [
        {
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "What is "}, {"type": "text", "text": "2+2?"}]},
                {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "tool", "content": "4", "tool_call_id": "call_1"},
            ],
            "weak_correct": True,
            "strong_correct": True,
        },
        "",
        {"prompt": "Prove Fermat's last theorem.", "weak_correct": False, "strong_correct": True},
    ]
    data = load_labels([write_jsonl(tmp_path / "a.jsonl", rows)])
    assert (data.name, len(data), data.weak.tolist(), data.strong.tolist()) == (
        LABELS_NAME,
        2,
        [True, False],
        [True, True],
    )
    first, second = data.conversations()
    assert first == (
        ChatTurn("system", "Be brief."),
        ChatTurn("user", "What is 2+2?"),
        ChatTurn("assistant", 'lookup({"q": "x"})'),
        ChatTurn("tool", "4"),
    )
    assert second == (ChatTurn("user", "Prove Fermat's last theorem."),)
    assert data.prompts[0] == render_conversation(first)
    # The gateway scores a request's messages in the engines' form: the same turns come out.
    for message in rows[0]["messages"]:  # type: ignore[index]
        served = engine_message(ChatMessage.model_validate(message))
        assert turn_from_message(message) == turn_from_message(served)
    # Subsets and concatenation keep the conversations; the public sets stay one-turn prompts.
    assert data.subset(np.array([1])).conversations() == [second]
    both = concat(
        [data.subset(np.array([0])), LabeledPrompts("x", ("q",), np.ones(1, bool), np.ones(1, bool), ("x",), "d")]
    )
    assert both.conversations() == [first, (ChatTurn("user", "q"),)]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"prompt": "q", "weak_correct": true, "strong_correct": true, "score": 1}', "unknown field(s) score"),
        (
            '{"prompt": "q", "messages": [], "weak_correct": true, "strong_correct": true}',
            "either 'messages' or 'prompt'",
        ),
        ('{"weak_correct": true, "strong_correct": true}', "either 'messages' or 'prompt'"),
        ('{"prompt": "  ", "weak_correct": true, "strong_correct": true}', "non-empty string"),
        ('{"messages": [], "weak_correct": true, "strong_correct": true}', "non-empty list"),
        ('{"messages": [{"content": "q"}], "weak_correct": true, "strong_correct": true}', "string 'role'"),
        (
            '{"messages": [{"role": "user", "content": 3}], "weak_correct": true, "strong_correct": true}',
            "content must",
        ),
        (
            '{"messages": [{"role": "assistant", "content": "a"}], "weak_correct": true, "strong_correct": true}',
            "no system or user text",
        ),
        ('{"prompt": "q", "weak_correct": "yes", "strong_correct": true}', "'weak_correct' must be true or false"),
        ('{"prompt": "q", "weak_correct": true}', "'strong_correct' must be true or false"),
    ],
)
def test_a_bad_line_is_refused_naming_its_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    good = '{"prompt": "fine", "weak_correct": true, "strong_correct": false}'
    path = write_jsonl(tmp_path / "bad.jsonl", [good, good, line])
    with pytest.raises(RouterDataError) as info:
        load_labels([path])
    assert f"{path}:3: " in str(info.value) and message in str(info.value)


def test_too_few_or_missing_label_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RouterDataError, match="cannot read label file"):
        load_labels([tmp_path / "missing.jsonl"])
    with pytest.raises(RouterDataError, match="at least 2"):
        load_labels(
            [write_jsonl(tmp_path / "one.jsonl", ['{"prompt": "q", "weak_correct": true, "strong_correct": true}'])]
        )
    with pytest.raises(RouterDataError, match="no label files"):
        load_labels([])


def test_a_router_trained_on_labelled_traffic_alone_scores_whole_conversations(
    mmlu: LabeledPrompts, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = write_jsonl(tmp_path / "traffic.jsonl", [*labelled_conversations(mmlu, 1500)])
    out = tmp_path / "artifact"
    # With --labels the public sets stay out unless --datasets names them.
    argv = ["train", "--router", "lexical", "--labels", str(labels), "--out", str(out)]
    assert main([*argv, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "held-out labels APGR" in printed
    meta = read_metadata(out)
    assert meta["trained_on"]["datasets"] == [LABELS_NAME]
    assert meta["trained_on"]["label_files"] == [str(labels)]
    assert meta["trained_on"]["rows"] == 1500
    assert meta["command"].endswith(f"--labels {labels}")
    held_out = meta["metrics"]["per_dataset"][LABELS_NAME]
    assert held_out["n"] >= 250 and held_out["apgr"] > 0.5  # beats random on prompts it did not see
    router = load_router(out)
    question = ChatTurn("user", mmlu.prompts[0])
    # The whole conversation is scored: the same question after a system turn scores otherwise.
    assert router.score([ChatTurn("system", SYSTEM), question]) != router.score([question])


def test_eval_cross_validates_labelled_traffic_and_tries_the_public_sets_on_it(
    routellm_dir: Path,
    mmlu: LabeledPrompts,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.unit.router_models.test_default_artifact_and_cli import _small_loader

    monkeypatch.setattr("router_models.data.load_dataset", _small_loader())
    labels = write_jsonl(tmp_path / "traffic.jsonl", labelled_conversations(mmlu, 600, seed=1))
    argv = ["eval", "--data", str(routellm_dir), "--routers", "lexical,random", "--folds", "2", "--labels", str(labels)]
    assert main([*argv, "--out", str(tmp_path / "eval"), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "labels 2-fold CV" in text and "train mmlu+gsm8k -> test labels" in text
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert report["labels 2-fold CV"]["lexical"]["summary"]["apgr"] > 0.5
    # Only the labels: no public set, so no transfer setting either.
    argv = ["eval", "--datasets", "none", "--routers", "lexical", "--folds", "2", "--labels", str(labels)]
    assert main([*argv, "--out", str(tmp_path / "only"), "--quiet"]) == 0
    assert set(json.loads((tmp_path / "only" / "eval.json").read_text())) == {"labels 2-fold CV"}


def test_public_sets_join_labelled_traffic_only_when_named(
    routellm_dir: Path,
    mmlu: LabeledPrompts,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.unit.router_models.test_default_artifact_and_cli import _small_loader

    monkeypatch.setattr("router_models.data.load_dataset", _small_loader())
    labels = write_jsonl(tmp_path / "traffic.jsonl", labelled_conversations(mmlu, 300, seed=2))
    out = tmp_path / "mixed"
    argv = ["train", "--router", "lexical", "--data", str(routellm_dir), "--datasets", "gsm8k", "--labels", str(labels)]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    meta = read_metadata(out)
    assert meta["trained_on"]["datasets"] == ["gsm8k", LABELS_NAME] and meta["trained_on"]["rows"] == 700
    assert set(meta["metrics"]["per_dataset"]) == {"gsm8k", LABELS_NAME}
    assert "--datasets gsm8k" in meta["command"]
    assert main(["train", "--router", "lexical", "--datasets", "none", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "nothing to train on" in capsys.readouterr().err
