"""Loading the RouteLLM per-prompt correctness labels (MMLU and GSM8K).

The data live outside the repository (``../shared/data/routellm`` relative to the repo root, or
``$SLM_ROUTER_DATA``); they are read in place and never copied into the repo.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from router_models.conversation import ChatTurn, as_conversation
from router_models.errors import RouterDataError

WEAK_MODEL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG_MODEL = "gpt-4-1106-preview"
DATA_ENV_VAR = "SLM_ROUTER_DATA"
DATASETS = ("mmlu", "gsm8k")


@dataclass(frozen=True)
class LabeledPrompts:
    """Prompts with the weak and strong models' per-prompt correctness.

    ``weak``/``strong`` are boolean arrays aligned with ``prompts``; ``subject`` is the MMLU
    domain (or the data set name) and is only used for reporting, never as a feature.
    ``turns`` holds whole conversations (labelled chat traffic, :mod:`router_models.labels`);
    ``None`` means every row is one user prompt. ``prompts`` then holds each conversation
    rendered, which is what groups duplicates and what digests cover.
    """

    name: str
    prompts: tuple[str, ...]
    weak: npt.NDArray[np.bool_]
    strong: npt.NDArray[np.bool_]
    subject: tuple[str, ...]
    digest: str
    turns: tuple[tuple[ChatTurn, ...], ...] | None = None

    def __len__(self) -> int:
        return len(self.prompts)

    def conversations(self) -> list[tuple[ChatTurn, ...]]:
        """Each row as the conversation a router scores."""
        if self.turns is not None:
            return list(self.turns)
        return [as_conversation(p) for p in self.prompts]

    def subset(self, index: npt.NDArray[np.intp]) -> LabeledPrompts:
        """Rows at ``index`` (digest marks the subset so metadata stays truthful)."""
        idx = np.asarray(index, dtype=np.intp)
        h = hashlib.sha256(self.digest.encode())
        h.update(idx.tobytes())
        return LabeledPrompts(
            name=self.name,
            prompts=tuple(self.prompts[i] for i in idx),
            weak=self.weak[idx],
            strong=self.strong[idx],
            subject=tuple(self.subject[i] for i in idx),
            digest=h.hexdigest(),
            turns=None if self.turns is None else tuple(self.turns[i] for i in idx),
        )


def repo_root() -> Path:
    """The repository root (parent of the ``router_models`` package)."""
    return Path(__file__).resolve().parents[1]


def default_data_path() -> Path:
    """``$SLM_ROUTER_DATA`` if set, else ``<repo>/../shared/data/routellm``."""
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    return (repo_root().parent / "shared" / "data" / "routellm").resolve()


def _parse_bool(value: str, where: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1"):
        return True
    if v in ("false", "0"):
        return False
    raise RouterDataError(f"{where}: expected a boolean, got {value!r}")


def _contaminated(path: Path) -> frozenset[str]:
    if not path.exists():
        return frozenset()
    out: set[str] = set()
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.add(str(json.loads(line)["eval_prompt"]))
    return frozenset(out)


def _read_rows(files: Iterable[Path]) -> tuple[list[tuple[str, bool, bool, str]], hashlib._Hash]:
    csv.field_size_limit(1 << 30)
    rows: list[tuple[str, bool, bool, str]] = []
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        digest.update(f.read_bytes())
        subject = f.stem.removeprefix("mmlu_")
        with f.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            for col in ("prompt", WEAK_MODEL, STRONG_MODEL):
                if col not in fields:
                    raise RouterDataError(f"{f}: missing column {col!r}")
            for i, r in enumerate(reader):
                where = f"{f}:{i + 2}"
                rows.append(
                    (
                        r["prompt"],
                        _parse_bool(r[WEAK_MODEL], where),
                        _parse_bool(r[STRONG_MODEL], where),
                        subject,
                    )
                )
    return rows, digest


def load_dataset(name: str, data_dir: Path | None = None) -> LabeledPrompts:
    """Load ``mmlu`` or ``gsm8k`` from ``data_dir`` with RouteLLM's contaminated prompts dropped.

    Only the prompt and the two correctness columns are read: GSM8K's response columns would
    leak the answer and must never reach a feature extractor.
    """
    if name not in DATASETS:
        raise RouterDataError(f"unknown data set {name!r}; expected one of {DATASETS}")
    root = (data_dir or default_data_path()) / name
    if not root.is_dir():
        raise RouterDataError(f"data directory {root} not found; pass --data or set ${DATA_ENV_VAR}")
    files = sorted(root.glob("mmlu_*.csv")) if name == "mmlu" else [root / "gsm8k_responses.csv"]
    if not files or not all(f.exists() for f in files):
        raise RouterDataError(f"no CSV files for {name} under {root}")
    rows, digest = _read_rows(files)
    bad = _contaminated(root / "contaminated_prompts.jsonl")
    digest.update(json.dumps(sorted(bad)).encode())
    rows = [r for r in rows if r[0] not in bad]
    return LabeledPrompts(
        name=name,
        prompts=tuple(r[0] for r in rows),
        weak=np.array([r[1] for r in rows], dtype=bool),
        strong=np.array([r[2] for r in rows], dtype=bool),
        subject=tuple(r[3] if name == "mmlu" else name for r in rows),
        digest=digest.hexdigest(),
    )


def concat(parts: Sequence[LabeledPrompts]) -> LabeledPrompts:
    """Concatenate data sets (e.g. MMLU + GSM8K for the default router)."""
    if not parts:
        raise RouterDataError("nothing to concatenate")
    h = hashlib.sha256()
    for p in parts:
        h.update(f"{p.name}:{p.digest};".encode())
    return LabeledPrompts(
        name="+".join(p.name for p in parts),
        prompts=tuple(x for p in parts for x in p.prompts),
        weak=np.concatenate([p.weak for p in parts]),
        strong=np.concatenate([p.strong for p in parts]),
        subject=tuple(x for p in parts for x in p.subject),
        digest=h.hexdigest(),
        turns=None if all(p.turns is None for p in parts) else tuple(c for p in parts for c in p.conversations()),
    )


def load_datasets(names: Sequence[str], data_dir: Path | None = None) -> list[LabeledPrompts]:
    """Load several data sets (see :func:`load_dataset`)."""
    return [load_dataset(n, data_dir) for n in names]
