"""``slm-router label``: turn a sample of your traffic into router training labels.

A router for your traffic needs, for each of a few thousand real prompts, whether the small and
the large model answered it acceptably (docs/routers.md: in-domain labels are worth far more
than public ones). This asks both models (through the gateway, or any OpenAI-compatible API)
and grades each answer, against the prompt's reference answer or by a judge model, and writes
the label file ``slm-router train --labels`` reads.

Input, one JSON object per line: ``messages`` (OpenAI chat messages) or ``prompt`` (one user
message), and optionally ``reference``, the expected answer (a string or a number), and
``tools`` / ``tool_choice`` as the request offered them (both models get them, so an agent's
conversation is answered as in production, tool calls included). Output: the label format of
:mod:`router_models.labels`, with both answers, the reference and the grader kept for audit.

The run is resumable and never guesses: each finished prompt is appended to the output at once;
a rerun skips the prompts already there; a prompt whose call failed (after the client's retries)
or whose judge gave no verdict is reported and left out, never written as a wrong answer. The
replies that did arrive for it are kept beside the output (:mod:`router_models.reply_cache`),
so the rerun pays only for the calls that failed.
Answers are asked for at temperature 0, as the RouteLLM labels were made.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from router_models.conversation import ChatTurn, render_conversation, turn_from_message
from router_models.errors import RouterDataError, RouterError
from router_models.grading import judge_messages, matches_reference, parse_verdict
from router_models.labels import conversation_of, jsonl_objects, read_text
from router_models.reply_cache import CachedReply, ReplyCache, request_digest

if TYPE_CHECKING:
    from openai import AsyncOpenAI

__all__ = ["Endpoint", "LabelItem", "LabelReport", "Labeller", "label_file", "read_prompts"]

T = TypeVar("T")
U = TypeVar("U")
_INPUT_FIELDS = frozenset({"messages", "prompt", "reference", "tools", "tool_choice"})
_ROLES = ("weak", "strong", "judge")
#: Room for a one-word verdict; a judge that reasons before answering needs more (``--judge-max-tokens``).
DEFAULT_JUDGE_MAX_TOKENS = 16
#: A reasoning judge's cap counts its hidden reasoning too (``--judge-reasoning``).
DEFAULT_REASONING_JUDGE_MAX_TOKENS = 4096
#: The gateway's header naming the model that answered (gateway.serving.chat.HEADER_MODEL).
_ANSWERED_BY = "x-slm-router-model"


class LabellingError(RouterError):
    """One prompt could not be labelled (a failed call, or a judge without a verdict)."""


@dataclass(frozen=True)
class LabelItem:
    """One prompt to label, as read from the input."""

    where: str
    key: str
    source: Mapping[str, Any]
    messages: list[dict[str, Any]]
    reference: str | None
    #: ``tools`` and ``tool_choice`` for both models' calls (empty when none were offered).
    tool_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoint:
    """A model behind an OpenAI-compatible API (the client is shared, created once)."""

    client: AsyncOpenAI
    model: str


@dataclass
class LabelReport:
    """What a run did: prompts labelled, skipped (already in the output), failed, replies reused
    from an earlier run, and tokens used (by this run's calls only)."""

    labelled: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    truncated: int = 0
    reused: int = 0
    tokens: dict[str, list[int]] = field(default_factory=lambda: {r: [0, 0] for r in _ROLES})


def _conversation_key(conversation: Sequence[ChatTurn]) -> str:
    # The whole conversation as the router reads it: the same prompt written as ``prompt`` or as
    # one user message is one prompt.
    return hashlib.sha256(render_conversation(conversation, max_chars=1 << 62).encode()).hexdigest()


def read_prompts(path: Path, need_reference: bool) -> tuple[list[LabelItem], int]:
    """The prompts in ``path`` (format in the module doc) and how many repeated an earlier one.

    A repeated conversation is labelled once. Raises :class:`RouterDataError` naming the line of
    the first malformed one, or of one without ``reference`` when ``need_reference``.
    """
    text = read_text(path, "prompt file")
    items: list[LabelItem] = []
    seen: set[str] = set()
    duplicates = 0
    for where, item in jsonl_objects(path, text):
        unknown = sorted(set(item) - _INPUT_FIELDS)
        if unknown:
            raise RouterDataError(
                f"{where}: unknown field(s) {', '.join(unknown)} (expected messages or prompt, and reference)"
            )
        conversation = conversation_of(item, where)
        reference = item.get("reference")
        if reference is not None and (isinstance(reference, bool) or not isinstance(reference, str | int | float)):
            raise RouterDataError(f"{where}: 'reference' must be a string or a number")
        if reference is None and need_reference:
            raise RouterDataError(f"{where}: no 'reference' to grade against; give one or name a --judge")
        key = _conversation_key(conversation)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        options = _tool_options(item, where)
        source: dict[str, Any] = {k: item[k] for k in ("messages", "prompt") if k in item} | options
        messages = item["messages"] if "messages" in item else [{"role": "user", "content": item["prompt"]}]
        items.append(LabelItem(where, key, source, messages, None if reference is None else str(reference), options))
    if not items:
        raise RouterDataError(f"{path}: no prompts")
    return items, duplicates


def _tool_options(item: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``tools`` and ``tool_choice`` of an input line, checked as far as the label run needs
    (the models' APIs check the rest, and a refusal fails that prompt, naming its line)."""
    tools, choice = item.get("tools"), item.get("tool_choice")
    if tools is None:
        if choice is not None:
            raise RouterDataError(f"{where}: 'tool_choice' needs 'tools'")
        return {}
    if not isinstance(tools, list) or not tools:
        raise RouterDataError(f"{where}: 'tools' must be a non-empty list")
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise RouterDataError(
                f"{where}: tools[{index}] must be {{'type': 'function', 'function': {{'name': ...}}}}"
            )
    if choice is not None and not isinstance(choice, str | Mapping):
        raise RouterDataError(f"{where}: 'tool_choice' must be a string or an object")
    return {"tools": tools} | ({"tool_choice": choice} if choice is not None else {})


def _done_keys(path: Path) -> set[str]:
    """Keys of the prompts already labelled in ``path`` (an earlier, interrupted run's output).

    A last line cut short by a crash mid-write is removed, so the file stays a valid label file.
    """
    if not path.exists():
        return set()
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        head, _, tail = text.rpartition("\n")
        try:
            json.loads(tail)
            text += "\n"
        except json.JSONDecodeError:
            text = head + "\n" if head else ""
        path.write_text(text, encoding="utf-8")
    return {_conversation_key(conversation_of(item, where)) for where, item in jsonl_objects(path, text)}


class Labeller:
    """Asks the weak and the strong model for an answer and grades both."""

    def __init__(
        self,
        weak: Endpoint,
        strong: Endpoint,
        judge: Endpoint | None,
        max_tokens: int,
        judge_max_tokens: int = DEFAULT_JUDGE_MAX_TOKENS,
        judge_reasoning: bool = False,
    ) -> None:
        self._weak, self._strong, self._judge = weak, strong, judge
        self._max_tokens = max_tokens
        self._judge_max_tokens = judge_max_tokens
        # Reasoning models (OpenAI's o-series and later) refuse ``temperature`` other than the
        # default and ``max_tokens``: their judge calls send neither, but ``max_completion_tokens``.
        self._judge_reasoning = judge_reasoning
        #: Counts of this labeller's work so far (tokens, truncated answers; filled in by :func:`label_file`).
        self.report = LabelReport()
        #: Replies of earlier runs, and where this run's are kept (set by :func:`label_file`).
        self.replies: ReplyCache | None = None

    @property
    def grader(self) -> str:
        """How answers are graded, as written into each label line."""
        return f"judge:{self._judge.model}" if self._judge is not None else "reference"

    async def _complete(
        self,
        role: str,
        endpoint: Endpoint,
        messages: Sequence[Mapping[str, Any]],
        max_tokens: int,
        tool_options: Mapping[str, Any] | None = None,
    ) -> str:
        params: dict[str, Any] = {"temperature": 0, "max_tokens": max_tokens, **(tool_options or {})}
        if role == "judge" and self._judge_reasoning:
            params = {"max_completion_tokens": max_tokens}
        digest = request_digest(endpoint.model, messages, params)
        cached = self.replies.get(digest) if self.replies is not None else None
        if cached is not None:
            self.report.reused += 1
            self.report.truncated += cached.truncated
            return cached.text
        text, truncated = await self._call(role, endpoint, messages, params)
        # A judge's reply is kept only if it is a verdict: one that is not fails the prompt,
        # and the rerun should ask again rather than fail the same way.
        if self.replies is not None and (role != "judge" or parse_verdict(text) is not None):
            self.replies.put(digest, CachedReply(text, truncated))
        self.report.truncated += truncated
        return text

    async def _call(
        self,
        role: str,
        endpoint: Endpoint,
        messages: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
    ) -> tuple[str, bool]:
        from openai import APIError
        from openai.types.chat import ChatCompletion

        try:
            raw = await endpoint.client.chat.completions.with_raw_response.create(
                model=endpoint.model,
                messages=list(messages),  # type: ignore[arg-type]  # checked by read_prompts
                **params,
            )
            # Validated, unlike the SDK's own parse(): a malformed body fails this prompt, not the run.
            response = ChatCompletion.model_validate_json(raw.content)
        except APIError as exc:
            raise LabellingError(f"{role} model {endpoint.model!r}: {exc.message}") from exc
        except ValueError as exc:  # a body that is not a chat completion (pydantic, JSON)
            first = str(exc).splitlines()[0]
            raise LabellingError(f"{role} model {endpoint.model!r} sent a malformed response ({first})") from exc
        # Through the gateway, a label must come from the model it names: "router" (or any name
        # the gateway routes) would mix both tiers' answers under one flag.
        answered_by = raw.headers.get(_ANSWERED_BY)
        if answered_by is not None and answered_by != endpoint.model:
            raise LabellingError(
                f"{role} model {endpoint.model!r} was answered by {answered_by!r}; name a tier's model, not a router"
            )
        if not response.choices:
            raise LabellingError(f"{role} model {endpoint.model!r} returned no choices")
        if response.usage is not None:
            counts = self.report.tokens[role]
            counts[0] += response.usage.prompt_tokens
            counts[1] += response.usage.completion_tokens
        choice = response.choices[0]
        truncated = role != "judge" and choice.finish_reason == "length"
        # Tool calls read as the router reads them ("name(arguments)"), so a judge can grade them.
        return turn_from_message(choice.message.model_dump()).text, truncated

    async def _grade(self, item: LabelItem, answer: str) -> bool:
        if self._judge is None:
            assert item.reference is not None  # read_prompts checked it
            return matches_reference(answer, item.reference)
        request = judge_messages(item.messages, answer, item.reference)
        reply = await self._complete("judge", self._judge, request, self._judge_max_tokens)
        verdict = parse_verdict(reply)
        if verdict is None:
            raise LabellingError(f"judge gave no verdict: {reply[:80]!r}")
        return verdict

    async def label(self, item: LabelItem) -> dict[str, Any]:
        """The label line for ``item``; raises :class:`LabellingError` if it cannot be labelled."""
        weak_answer, strong_answer = await _both(
            self._complete("weak", self._weak, item.messages, self._max_tokens, item.tool_options),
            self._complete("strong", self._strong, item.messages, self._max_tokens, item.tool_options),
        )
        weak_ok, strong_ok = await _both(self._grade(item, weak_answer), self._grade(item, strong_answer))
        line: dict[str, Any] = {**item.source, "weak_correct": weak_ok, "strong_correct": strong_ok}
        line |= {"weak_answer": weak_answer, "strong_answer": strong_answer}
        if item.reference is not None:
            line["reference"] = item.reference
        line["grader"] = self.grader
        return line


async def _both(first: Coroutine[Any, Any, T], second: Coroutine[Any, Any, U]) -> tuple[T, U]:
    """Run two calls at once and wait for both; raise the first one's failure, else the second's.

    A call is not cancelled when the other fails: its reply is kept in the reply cache, and
    the rerun that retries the failed one does not pay for it again.
    """
    one, two = await asyncio.gather(first, second, return_exceptions=True)
    if isinstance(one, BaseException):
        raise one
    if isinstance(two, BaseException):
        raise two
    return one, two


async def label_file(
    items: Sequence[LabelItem], labeller: Labeller, out: Path, concurrency: int, progress: bool
) -> None:
    """Label ``items`` not yet in ``out``, ``concurrency`` at a time, appending each line as it lands."""
    report = labeller.report
    done = _done_keys(out)
    todo = [item for item in items if item.key not in done]
    report.skipped = len(items) - len(todo)
    gate = asyncio.Semaphore(concurrency)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc="labelling", unit="prompt", disable=not progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as sink, ReplyCache.beside(out) as replies:
        labeller.replies = replies

        async def one(item: LabelItem) -> None:
            async with gate:
                try:
                    line = await labeller.label(item)
                except LabellingError as exc:
                    report.failed.append((item.where, str(exc)))
                else:
                    # One write per line, flushed: an interrupted run keeps every finished label.
                    sink.write(json.dumps(line, ensure_ascii=False) + "\n")
                    sink.flush()
                    report.labelled += 1
                bar.update()

        try:
            await asyncio.gather(*(one(item) for item in todo))
        finally:
            bar.close()
            labeller.replies = None
        if not report.failed:
            replies.discard()
    report.failed.sort(key=lambda failure: _line_number(failure[0]))


def _line_number(where: str) -> int:
    return int(where.rpartition(":")[2])
