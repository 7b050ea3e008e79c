"""Operator-labelled prompts: train and evaluate routers on your own traffic.

A router learns what its training prompts teach. The shipped one knows MMLU and GSM8K, and what
it learns there transfers to other prompts barely better than chance (docs/routers.md), while its
in-domain quality still grows with every doubling of the labels. So the way to a router for
*your* traffic is labels from your traffic: send a sample of real requests to both models, grade
both answers (a rubric, tests, or the large model as judge), and write one JSON object per line:

.. code-block:: json

    {"messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "..."}],
     "weak_correct": true, "strong_correct": true}

``messages`` is the request's conversation as the client sent it (OpenAI chat messages: text
content or text parts, ``developer``, ``assistant`` turns with ``tool_calls``, ``tool`` turns);
``prompt`` (a string) may stand in for a single user message. ``weak_correct`` and
``strong_correct`` say whether the small and the large model answered acceptably. Blank lines
are skipped; anything else that is not such an object is an error naming its file and line.
``slm-router label`` (:mod:`router_models.labelling`) writes such files, adding ``weak_answer``,
``strong_answer``, ``reference`` and ``grader`` so a person can audit a grade, and ``tools`` and
``tool_choice`` when the models were offered tools; training reads past them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from router_models.conversation import ChatTurn, render_conversation, turn_from_message
from router_models.data import LabeledPrompts
from router_models.errors import RouterDataError

__all__ = ["LABELS_NAME", "conversation_of", "jsonl_objects", "load_labels", "read_conversations", "read_text"]

#: The data-set name of labelled prompts (in metadata, eval settings and held-out metrics).
LABELS_NAME = "labels"
_FIELDS = frozenset(
    {
        "messages",
        "prompt",
        "tools",
        "tool_choice",
        "weak_correct",
        "strong_correct",
        "weak_answer",
        "strong_answer",
        "reference",
        "grader",
    }
)


def jsonl_objects(path: Path, text: str, *, strings_as: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, object)`` for each non-blank line of ``text`` (read from ``path``); ``where`` is
    ``path:line``. With ``strings_as``, a line that is a JSON string reads as ``{strings_as:
    string}``. Any other line that is not a JSON object raises :class:`RouterDataError` naming it."""
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RouterDataError(f"{where}: not JSON ({exc.msg})") from exc
        if strings_as is not None and isinstance(item, str):
            item = {strings_as: item}
        if not isinstance(item, dict):
            raise RouterDataError(f"{where}: expected a JSON {'string or ' if strings_as else ''}object")
        yield where, item


def read_text(path: Path, what: str) -> str:
    """``path``'s text; an unreadable file raises :class:`RouterDataError` naming it as ``what``."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RouterDataError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def read_conversations(path: Path) -> list[tuple[ChatTurn, ...]]:
    """The conversations of a JSONL file, one per line, for calibration: a JSON string (one user
    prompt) or an object with ``messages`` or ``prompt``, other fields ignored, so a capture
    export, a prompt file for ``slm-router label`` and a label file all serve. A malformed line
    raises :class:`RouterDataError` naming it."""
    text = read_text(path, "reference file")
    conversations = [conversation_of(item, where) for where, item in jsonl_objects(path, text, strings_as="prompt")]
    if not conversations:
        raise RouterDataError(f"{path}: no conversations")
    return conversations


def conversation_of(item: Mapping[str, Any], where: str) -> tuple[ChatTurn, ...]:
    """The conversation of a labelled (or to-be-labelled) line, from ``messages`` or ``prompt``,
    as the router reads it; malformed input raises :class:`RouterDataError` naming ``where``."""
    if ("messages" in item) == ("prompt" in item):
        raise RouterDataError(f"{where}: give either 'messages' or 'prompt'")
    if "prompt" in item:
        prompt = item["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise RouterDataError(f"{where}: 'prompt' must be a non-empty string")
        return (ChatTurn("user", prompt.strip()),)
    messages = item["messages"]
    if not isinstance(messages, list) or not messages:
        raise RouterDataError(f"{where}: 'messages' must be a non-empty list")
    turns = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise RouterDataError(f"{where}: messages[{index}] needs a string 'role'")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise RouterDataError(f"{where}: messages[{index}].content must be a string or a list of parts")
        try:
            turns.append(turn_from_message(message))
        except (KeyError, TypeError) as exc:
            raise RouterDataError(f"{where}: messages[{index}] is malformed ({exc})") from exc
    if not any(turn.role in ("system", "user") and turn.text for turn in turns):
        raise RouterDataError(f"{where}: the conversation has no system or user text")
    return tuple(turns)


def _flag(item: Mapping[str, Any], key: str, where: str) -> bool:
    value = item.get(key)
    if not isinstance(value, bool):
        raise RouterDataError(f"{where}: {key!r} must be true or false, got {value!r}")
    return value


def load_labels(paths: Sequence[Path]) -> LabeledPrompts:
    """Read labelled conversations from JSONL files (format in the module doc) as one data set."""
    if not paths:
        raise RouterDataError("no label files given")
    digest = hashlib.sha256()
    conversations: list[tuple[ChatTurn, ...]] = []
    weak: list[bool] = []
    strong: list[bool] = []
    for path in paths:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise RouterDataError(f"cannot read label file {path}: {exc.strerror or exc}") from exc
        digest.update(f"{path.name}:{len(raw)};".encode())
        digest.update(raw)
        for where, item in jsonl_objects(path, raw.decode("utf-8", errors="replace")):
            unknown = sorted(set(item) - _FIELDS)
            if unknown:
                raise RouterDataError(f"{where}: unknown field(s) {', '.join(unknown)}")
            conversations.append(conversation_of(item, where))
            weak.append(_flag(item, "weak_correct", where))
            strong.append(_flag(item, "strong_correct", where))
    if len(conversations) < 2:
        raise RouterDataError(f"need at least 2 labelled conversations, found {len(conversations)}")
    return LabeledPrompts(
        name=LABELS_NAME,
        prompts=tuple(render_conversation(c) for c in conversations),
        weak=np.array(weak, dtype=bool),
        strong=np.array(strong, dtype=bool),
        subject=(LABELS_NAME,) * len(conversations),
        digest=digest.hexdigest(),
        turns=tuple(conversations),
    )
