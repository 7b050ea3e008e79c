"""Conversation rendering, registry immutability, data loading, CLI wiring."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

import router_models
from router_models import ChatTurn, RouterError
from router_models.cli import register_commands
from router_models.conversation import MAX_RENDERED_CHARS, render_conversation
from router_models.data import LabeledPrompts, load_dataset
from router_models.errors import RouterDataError
from router_models.registry import ROUTERS, get_spec


def test_chat_turn_is_frozen() -> None:
    turn = ChatTurn("user", "hi")
    with pytest.raises(dataclasses.FrozenInstanceError):
        turn.text = "changed"  # type: ignore[misc]


def test_render_keeps_all_turns_in_order() -> None:
    text = render_conversation(
        [
            ChatTurn("system", "be brief"),
            ChatTurn("user", "hello"),
            ChatTurn("assistant", "hi"),
            ChatTurn("user", "bye"),
        ]
    )
    assert text == "system: be brief\n\nuser: hello\n\nassistant: hi\n\nuser: bye"


def test_render_drops_oldest_turns_when_too_long() -> None:
    old = ChatTurn("user", "x" * (MAX_RENDERED_CHARS * 2))
    text = render_conversation([old, ChatTurn("user", "latest question")])
    assert len(text) <= MAX_RENDERED_CHARS + 2
    assert text.endswith("user: latest question")


def test_registry_is_immutable_and_complete() -> None:
    assert {"lexical", "embedding", "knn", "ensemble", "stacked"} <= set(ROUTERS)
    with pytest.raises(TypeError):
        ROUTERS["x"] = ROUTERS["lexical"]  # type: ignore[index]
    assert get_spec("lexical").latency_budget_ms == 3.0
    assert get_spec("ensemble").latency_budget_ms == 10.0
    assert get_spec("stacked").latency_budget_ms == 10.0
    with pytest.raises(RouterError, match="known routers"):
        get_spec("nope")
    assert router_models.ROUTERS is ROUTERS


def test_data_loading_drops_contaminated(mmlu: LabeledPrompts, gsm8k: LabeledPrompts) -> None:
    assert len(mmlu) == 14042 - 5 and len(gsm8k) == 1319 - 12
    assert 0.67 < mmlu.weak.mean() < 0.69 and 0.80 < mmlu.strong.mean() < 0.81
    assert set(gsm8k.subject) == {"gsm8k"}


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RouterDataError, match="not found"):
        load_dataset("mmlu", tmp_path)
    with pytest.raises(RouterDataError, match="unknown data set"):
        load_dataset("arena", tmp_path)


def test_cli_registers_subcommands() -> None:
    parser = argparse.ArgumentParser(prog="slm-router")
    register_commands(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(["train", "--router", "lexical", "--data", "/d", "--out", "/o", "--seed", "3"])
    assert (args.router, args.data, args.out, args.seed) == ("lexical", "/d", "/o", 3) and callable(args.func)
    args = parser.parse_args(["calibrate", "--artifact", "/a", "--large-share", "0.3"])
    assert args.large_share == 0.3
    args = parser.parse_args(["eval", "--routers", "lexical", "random", "--folds", "5", "--out", "/o"])
    assert args.routers == ["lexical", "random"] and args.folds == 5
    assert args.encoder == "int8"
    args = parser.parse_args(["eval", "--out", "/o", "--encoder", "int8-l2-t64"])
    assert args.encoder == "int8-l2-t64"
    with pytest.raises(SystemExit):  # argparse rejects profiles that do not exist
        parser.parse_args(["train", "--router", "embedding", "--out", "/o", "--encoder", "int4"])
