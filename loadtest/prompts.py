"""Easy and hard chat prompts for the load test, read from the labelled RouteLLM folder.

A prompt is *easy* when the weak model (Mixtral-8x7B) answered it correctly and *hard* when
the weak model was wrong but the strong one (GPT-4) was right; prompts both got wrong carry
no routing signal and are dropped. Only the standard library is used: Locust runs under
gevent and the gateway's packages (numpy, Ray, litellm) must stay out of its process, which
is also why this does not reuse ``router_models.data``.
"""

from __future__ import annotations

import csv
import itertools
import os
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "BUILTIN_PROMPTS",
    "DATASETS",
    "DATA_ENV_VAR",
    "Label",
    "LabelledPrompt",
    "PromptMix",
    "PromptSet",
    "default_data_path",
    "label_of",
    "load_prompts",
    "read_routellm",
]

Label = Literal["easy", "hard"]

WEAK_MODEL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG_MODEL = "gpt-4-1106-preview"
DATA_ENV_VAR = "SLM_ROUTER_DATA"
DATASETS = ("mmlu", "gsm8k")


@dataclass(frozen=True, slots=True)
class LabelledPrompt:
    """One user message, whether the small model should manage it, and where it came from."""

    text: str
    label: Label
    source: str


@dataclass(frozen=True, slots=True)
class PromptSet:
    """The prompts a run draws from; ``origin`` is ``"routellm"`` or ``"builtin"``."""

    prompts: tuple[LabelledPrompt, ...]
    origin: str
    warning: str | None = None

    def of(self, label: Label) -> list[LabelledPrompt]:
        """The prompts with ``label``."""
        return [p for p in self.prompts if p.label == label]


#: Used when the data folder is missing, so the load test still runs (with a warning).
#: Hand-labelled: the easy ones are short look-ups, the hard ones need several reasoning steps.
_BUILTIN: tuple[tuple[Label, tuple[str, ...]], ...] = (
    (
        "easy",
        (
            "What is the capital of France?",
            "Give me a synonym for happy.",
            "Translate 'good morning' into Spanish.",
            "How many days are there in a leap year?",
            "Which planet is known as the Red Planet?\nA. Venus\nB. Mars\nC. Jupiter\nD. Saturn\nAnswer:",
            "What is 12 times 12?",
        ),
    ),
    (
        "hard",
        (
            "Explain, step by step, why the sum of the angles of a triangle is 180 degrees.",
            "A train leaves at 3pm going 60 mph; another leaves at 4pm going 80 mph on the same track. "
            "When does the second catch up?",
            "Summarise the causes of the First World War in three bullet points.",
            "Let G be a group of order 15. Is G necessarily cyclic? Justify.\nA. Yes\nB. No\nAnswer:",
            "A shop sells pens at 3 for $2 and pencils at 5 for $1. Ana buys 12 pens and 20 pencils and pays "
            "with a $20 bill. How much change does she get?",
        ),
    ),
)
BUILTIN_PROMPTS: tuple[LabelledPrompt, ...] = tuple(
    LabelledPrompt(text, label, "builtin") for label, texts in _BUILTIN for text in texts
)


def repo_root() -> Path:
    """The repository root (the parent of ``loadtest/``)."""
    return Path(__file__).resolve().parents[1]


def default_data_path() -> Path:
    """``$SLM_ROUTER_DATA`` if set, else ``<repo>/../shared/data/routellm`` (as the routers read it)."""
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return repo_root().parent / "shared" / "data" / "routellm"


def _parse_bool(value: str, where: str) -> bool:
    text = value.strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise ValueError(f"{where}: expected a boolean, got {value!r}")


def label_of(weak_correct: bool, strong_correct: bool) -> Label | None:
    """``easy`` if the weak model was right, ``hard`` if only the strong one was, else ``None``."""
    if weak_correct:
        return "easy"
    return "hard" if strong_correct else None


def _files(root: Path, dataset: str) -> list[Path]:
    folder = root / dataset
    if dataset == "mmlu":
        return sorted(folder.glob("mmlu_*.csv"))
    if dataset == "gsm8k":
        path = folder / "gsm8k_responses.csv"
        return [path] if path.is_file() else []
    raise ValueError(f"unknown data set {dataset!r}; expected one of {DATASETS}")


def _read_csv(path: Path, source: str, max_chars: int | None) -> Iterator[LabelledPrompt]:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"prompt", WEAK_MODEL, STRONG_MODEL} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        for line, row in enumerate(reader, 2):
            where = f"{path}:{line}"
            label = label_of(_parse_bool(row[WEAK_MODEL], where), _parse_bool(row[STRONG_MODEL], where))
            # The prompt is sent verbatim: MMLU rows already read "question, lettered choices,
            # Answer:" and GSM8K rows are the bare question, which is also what the shipped
            # router was trained on, so its decisions under load match its offline evaluation.
            text = row["prompt"].strip()
            if label is None or not text or (max_chars is not None and len(text) > max_chars):
                continue
            yield LabelledPrompt(text, label, source)


def read_routellm(
    root: Path, datasets: Iterable[str] = DATASETS, *, max_chars: int | None = None
) -> list[LabelledPrompt]:
    """Labelled prompts from the RouteLLM folder ``root`` (``mmlu/``, ``gsm8k/``).

    Only the prompt and the two correctness columns are read; GSM8K's response columns are
    ignored. ``max_chars`` drops longer prompts (a few MMLU passages run to thousands of
    characters). Raises :class:`FileNotFoundError` when a data set has no CSV file and
    :class:`ValueError` on a malformed file.
    """
    csv.field_size_limit(1 << 30)  # GSM8K response cells exceed csv's 128 KiB default
    prompts: list[LabelledPrompt] = []
    for dataset in datasets:
        files = _files(root, dataset)
        if not files:
            raise FileNotFoundError(f"no {dataset} CSV files under {root / dataset}")
        for path in files:
            source = f"mmlu:{path.stem.removeprefix('mmlu_')}" if dataset == "mmlu" else dataset
            prompts.extend(_read_csv(path, source, max_chars))
    return prompts


def load_prompts(
    root: Path | None = None, datasets: Iterable[str] = DATASETS, *, max_chars: int | None = None
) -> PromptSet:
    """The RouteLLM prompts under ``root`` (default :func:`default_data_path`), or the built-in list.

    Falls back to :data:`BUILTIN_PROMPTS`, with a warning in :attr:`PromptSet.warning`, when
    the folder is missing or yields no easy or no hard prompt, so a run can always start.
    """
    path = root if root is not None else default_data_path()
    try:
        prompts = read_routellm(path, datasets, max_chars=max_chars)
    except FileNotFoundError as error:
        return PromptSet(BUILTIN_PROMPTS, "builtin", f"RouteLLM data not found ({error}); using built-in prompts")
    labels = {p.label for p in prompts}
    if labels != {"easy", "hard"}:
        return PromptSet(
            BUILTIN_PROMPTS, "builtin", f"RouteLLM data under {path} has no easy or no hard prompt; using built-in"
        )
    return PromptSet(tuple(prompts), "routellm")


class PromptMix:
    """A fixed, seeded schedule of prompts with an exact share of hard ones, served in a cycle.

    The schedule holds ``length`` prompts, ``round(length * hard_share)`` of them hard, drawn
    without replacement while a pool lasts and shuffled. Every run with the same data, share,
    seed and length sends the same prompts in the same order (which user sends which varies).
    """

    def __init__(
        self,
        easy: Sequence[LabelledPrompt],
        hard: Sequence[LabelledPrompt],
        *,
        hard_share: float,
        seed: int,
        length: int = 1000,
    ) -> None:
        if not 0.0 <= hard_share <= 1.0:
            raise ValueError(f"hard share must be within [0, 1], got {hard_share}")
        if length < 1:
            raise ValueError(f"schedule length must be positive, got {length}")
        n_hard = round(length * hard_share)
        if (n_hard and not hard) or (length - n_hard and not easy):
            raise ValueError("no prompts for a requested label")
        rng = random.Random(seed)
        schedule = self._draw(rng, hard, n_hard) + self._draw(rng, easy, length - n_hard)
        rng.shuffle(schedule)
        self.schedule: tuple[LabelledPrompt, ...] = tuple(schedule)
        self.hard_share = hard_share
        self.seed = seed
        self._cycle = itertools.cycle(self.schedule)

    @staticmethod
    def _draw(rng: random.Random, pool: Sequence[LabelledPrompt], count: int) -> list[LabelledPrompt]:
        # Without replacement while the pool lasts, so small runs never repeat a prompt.
        out: list[LabelledPrompt] = []
        while len(out) < count:
            out.extend(rng.sample(list(pool), min(len(pool), count - len(out))))
        return out

    def next(self) -> LabelledPrompt:
        """The next prompt of the schedule (wraps around)."""
        return next(self._cycle)
