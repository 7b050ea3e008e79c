"""Train a router, measure it on a held-out split, calibrate it, and write the artifact.

Procedure (seeded, deterministic for a given data digest and library versions):
1. load the data sets (default MMLU + GSM8K) and warm the embedding cache per data set;
2. hold out 20% of unique prompts; fit on the rest; score the held-out prompts →
   RouteLLM metrics per data set and the share → threshold calibration table;
3. refit on all rows and save the artifact with that metadata.
The calibration table therefore comes from scores on prompts the model did not see, which is
what production traffic looks like to the final model.
"""

from __future__ import annotations

import datetime as dt
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from router_models.artifacts import library_versions, save_router
from router_models.base import Router
from router_models.calibration import DEFAULT_LARGE_SHARE, calibration_table, threshold_for_share
from router_models.conversation import render_conversation
from router_models.data import LabeledPrompts, concat, load_datasets
from router_models.encoder import DEFAULT_PROFILE, MiniLMEncoder
from router_models.errors import RouterDataError
from router_models.labels import LABELS_NAME, load_labels
from router_models.metrics import routing_metrics
from router_models.registry import TrainContext, get_spec
from router_models.splits import holdout_split

DEFAULT_DATASETS = ("mmlu", "gsm8k")
HOLDOUT_FRACTION = 0.2


def package_version() -> str:
    """Installed distribution version of this project, or ``"0+local"`` from a checkout."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("slm-router")
    except PackageNotFoundError:
        return "0+local"


def warm_embeddings(encoder: MiniLMEncoder, parts: Sequence[LabeledPrompts], progress: bool) -> None:
    """Embed each data set once (disk cache) so later subsets are served from memory."""
    for part in parts:
        encoder.encode_cached([render_conversation(c) for c in part.conversations()], progress=progress)


def fit_router(name: str, data: LabeledPrompts, ctx: TrainContext) -> Router:
    """Train router ``name`` on ``data`` with a shared context."""
    return get_spec(name).train(data, ctx)


def train_and_save(
    name: str,
    out_dir: Path,
    data_dir: Path | None = None,
    seed: int = 0,
    datasets: Sequence[str] = DEFAULT_DATASETS,
    progress: bool = True,
    command: str = "",
    encoder_profile: str = DEFAULT_PROFILE,
    labels: Sequence[Path] = (),
) -> dict[str, Any]:
    """Train ``name`` end to end and write the artifact to ``out_dir``; returns its metadata.

    ``datasets`` names RouteLLM sets under ``data_dir``; ``labels`` adds (or, with no data sets,
    is) operator-labelled conversations (:mod:`router_models.labels`).
    """
    from tqdm.auto import tqdm

    spec = get_spec(name)
    started = time.time()
    parts = load_datasets(datasets, data_dir)
    if labels:
        parts.append(load_labels(labels))
    if not parts:
        raise RouterDataError("nothing to train on: name data sets, label files, or both")
    data = concat(parts)
    needs_encoder = spec.latency_class == "embedding"
    encoder = MiniLMEncoder.for_training(encoder_profile)
    if needs_encoder:
        warm_embeddings(encoder, parts, progress)
    steps = tqdm(total=2, desc=f"train {name}", disable=not progress)
    fit_idx, held_idx = holdout_split(data.prompts, HOLDOUT_FRACTION, seed)
    ctx = TrainContext(seed=seed, progress=progress, encoder=encoder)
    model = fit_router(name, data.subset(fit_idx), ctx)
    held = data.subset(held_idx)
    held_scores = model.score_many(held.conversations())
    steps.update()
    metrics: dict[str, Any] = {}
    names = np.array(_dataset_of(held))
    for ds in (p.name for p in parts):
        mask = names == ds
        if mask.sum() > 1:
            metrics[ds] = routing_metrics(held_scores[mask], held.weak[mask], held.strong[mask]).as_dict()
            metrics[ds]["n"] = int(mask.sum())
    final = fit_router(name, data, ctx)
    steps.update()
    steps.close()
    metadata: dict[str, Any] = {
        "description": spec.description,
        "trained_on": {
            "datasets": [p.name for p in parts],
            "label_files": [str(path) for path in labels],
            "data_digest": data.digest,
            "dataset_digests": {p.name: p.digest for p in parts},
            "rows": len(data),
            "seed": seed,
            "encoder_profile": encoder.profile.name if needs_encoder else None,
        },
        "metrics": {"holdout_fraction": HOLDOUT_FRACTION, "per_dataset": metrics},
        "calibration": {
            "method": "quantile of held-out scores (RouteLLM); route large iff score >= threshold",
            "reference": f"{HOLDOUT_FRACTION:.0%} held-out prompts of {data.name}",
            "table": calibration_table(held_scores),
        },
        "default_large_share": DEFAULT_LARGE_SHARE,
        "default_threshold": threshold_for_share(held_scores, DEFAULT_LARGE_SHARE),
        "library_versions": library_versions(),
        "package_version": package_version(),
        "python": platform.python_version(),
        "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "train_seconds": round(time.time() - started, 1),
        "command": command,
    }
    return save_router(final, out_dir, metadata)


def _dataset_of(data: LabeledPrompts) -> list[str]:
    # concat() keeps MMLU subjects; every other set's rows carry the set's name as subject.
    return [s if s in ("gsm8k", LABELS_NAME) else "mmlu" for s in data.subject]
