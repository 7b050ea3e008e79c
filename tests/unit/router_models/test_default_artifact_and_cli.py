"""The committed default artifact and the CLI commands end to end (lexical, GSM8K only: fast)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from router_models import ChatTurn, default_artifact_path, load_router
from router_models.calibration import TABLE_SHARES
from router_models.cli import main
from router_models.data import LabeledPrompts


def test_default_artifact_loads_and_scores() -> None:
    router = load_router(default_artifact_path())
    meta = router.metadata
    assert router.name == meta["router"]
    assert [row["large_share"] for row in meta["calibration"]["table"]] == list(TABLE_SHARES)
    assert meta["default_large_share"] == 0.3
    assert router.default_threshold == meta["default_threshold"]
    assert meta["files"]["router.npz"] and meta["trained_on"]["data_digest"]
    score = router.score([ChatTurn("system", "be concise"), ChatTurn("user", "What is 17 * 23?")])
    assert 0.0 <= score <= 1.0
    assert isinstance(router.needs_large([ChatTurn("user", "hi")]), bool)


def test_cli_train_then_calibrate(routellm_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "art"
    argv = ["train", "--router", "lexical", "--data", str(routellm_dir), "--out", str(out), "--seed", "1"]
    assert main([*argv, "--datasets", "gsm8k", "--quiet"]) == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["trained_on"]["datasets"] == ["gsm8k"] and meta["trained_on"]["seed"] == 1
    capsys.readouterr()
    assert main(["calibrate", "--artifact", str(out), "--large-share", "0.3"]) == 0
    text = capsys.readouterr().out
    assert f"{meta['default_threshold']:.6f}" in text and "1.00" in text
    ref = tmp_path / "ref.jsonl"
    ref.write_text(
        "\n".join(
            [json.dumps(f"question number {i} about {'math' if i % 2 else 'poetry'}") for i in range(20)]
            + [json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "prove it"}]})]
        )
    )
    assert main(["calibrate", "--artifact", str(out), "--large-share", "0.5", "--reference", str(ref)]) == 0
    assert "21 reference prompts" in capsys.readouterr().out
    # A capture export (tools and all), a prompt file and a label file serve as they are.
    mixed = tmp_path / "mixed.jsonl"
    lines = [
        {"messages": [{"role": "user", "content": "Weather in Oslo?"}], "tools": [{"type": "function"}]},
        {"prompt": "What is 6*7?", "reference": "42"},
        {"prompt": "Name a prime.", "weak_correct": True, "strong_correct": True, "grader": "reference"},
    ]
    mixed.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    assert main(["calibrate", "--artifact", str(out), "--large-share", "0.5", "--reference", str(mixed)]) == 0
    assert "3 reference prompts" in capsys.readouterr().out
    # A bad line is named, not a traceback.
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps("fine") + "\n" + json.dumps({"text": "no messages"}) + "\n")
    assert main(["calibrate", "--artifact", str(out), "--large-share", "0.5", "--reference", str(bad)]) == 2
    assert f"{bad}:2: give either 'messages' or 'prompt'" in capsys.readouterr().err


def test_cli_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", "--artifact", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["calibrate", "--artifact", str(default_artifact_path()), "--large-share", "1.5"]) == 2
    assert "--large-share: large_share must be in [0, 1], got 1.5" in capsys.readouterr().err


def test_cli_eval_small(
    routellm_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 400 prompts of each data set, lexical + baselines, 2 folds. The CLI loads the data itself
    # (the label agreement needs it too), so the loader it imports is the one replaced; the
    # real data's agreement is checked in test_label_agreement.py.
    monkeypatch.setattr("router_models.data.load_dataset", _small_loader())
    argv = ["eval", "--data", str(routellm_dir), "--routers", "lexical,random", "oracle", "--folds", "2"]
    assert main([*argv, "--out", str(tmp_path), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "mmlu 2-fold CV" in text and "train gsm8k -> test mmlu" in text and "oracle" in text
    assert "mmlu: " in text and "gsm8k: no repeated prompts" in text
    assert (tmp_path / "cost_quality.png").stat().st_size > 10_000
    data = json.loads((tmp_path / "eval.json").read_text())
    assert data["gsm8k 2-fold CV"]["oracle"]["summary"]["apgr"] > 1.0


def _small_loader() -> Callable[[str, Path | None], LabeledPrompts]:
    from router_models.data import load_dataset as load_whole

    def load(name: str, data_dir: Path | None = None) -> LabeledPrompts:
        d = load_whole(name, data_dir)
        return d.subset(np.arange(min(len(d), 400)))

    return load


def test_a_reader_that_leaves_the_pipe_gets_no_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    # `slm-router calibrate ... | head -1`: head exits, and the next write fails with EPIPE.
    from gateway.cli import main as slm_router

    read, write = os.pipe()
    os.close(read)
    with os.fdopen(write, "w", buffering=1) as closed_pipe:
        monkeypatch.setattr(sys, "stdout", closed_pipe)
        argv = ["calibrate", "--artifact", str(default_artifact_path()), "--large-share", "0.3"]
        assert slm_router(argv) == 1
        print("more output, at exit too", flush=True)  # goes nowhere now, without raising
