"""Offline evaluation: 5-fold CV per data set and cross-data-set transfer.

Every router is retrained inside each fold on the training part only (folds group duplicate
prompts) and scored on the held-out part; metrics are computed per fold and averaged. The
``random`` and ``oracle`` baselines are scored on the same test rows. Curves for the PNG are the
per-fold accuracy curves resampled on a common share grid and averaged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from router_models.data import DATASETS, LabeledPrompts, concat, load_dataset
from router_models.encoder import DEFAULT_PROFILE, MiniLMEncoder
from router_models.labels import LABELS_NAME
from router_models.metrics import RoutingMetrics, cost_quality_curve, oracle_scores, random_scores, routing_metrics
from router_models.registry import BASELINES, ROUTERS, get_spec, train_routers
from router_models.splits import group_folds
from router_models.training import warm_embeddings

GRID = np.linspace(0.0, 1.0, 101)
GRID.setflags(write=False)  # shared module constant: make it immutable
#: Train order: the ensemble and stacked routers reuse components fitted earlier on the same fold.
_ORDER = ("lexical", "embedding", "knn", "ensemble", "stacked")


@dataclass
class SettingResult:
    """Per-router fold metrics and mean curves for one setting (e.g. ``mmlu 5-fold``)."""

    name: str
    folds: dict[str, list[RoutingMetrics]] = field(default_factory=dict)
    curves: dict[str, list[npt.NDArray[np.float64]]] = field(default_factory=dict)

    def add(self, router: str, scores: npt.ArrayLike, test: LabeledPrompts) -> None:
        self.folds.setdefault(router, []).append(routing_metrics(scores, test.weak, test.strong))
        curve = cost_quality_curve(scores, test.weak, test.strong)
        self.curves.setdefault(router, []).append(np.interp(GRID, curve.share, curve.accuracy))

    def summary(self, router: str) -> dict[str, float]:
        ms = self.folds[router]
        out: dict[str, float] = {}
        for key in ("apgr", "cpt50", "cpt80"):
            vals = np.array([getattr(m, key) for m in ms], dtype=np.float64)
            out[key] = float(np.nanmean(vals))
            out[f"{key}_std"] = float(np.nanstd(vals)) if len(vals) > 1 else 0.0
        return out


def _ordered(routers: Sequence[str]) -> list[str]:
    for r in routers:
        if r not in ROUTERS and r not in BASELINES:
            get_spec(r)  # raises a RouterError listing the known names
    trained = [r for r in _ORDER if r in routers] + [r for r in routers if r in ROUTERS and r not in _ORDER]
    return trained + [b for b in BASELINES if b in routers]


def _run_split(
    result: SettingResult,
    routers: Sequence[str],
    train: LabeledPrompts,
    test: LabeledPrompts,
    encoder: MiniLMEncoder,
    seed: int,
) -> None:
    convs = test.conversations()
    trained = train_routers([r for r in routers if r not in BASELINES], train, seed, encoder)
    for name in routers:
        if name == "random":
            scores: npt.ArrayLike = random_scores(len(test), seed)
        elif name == "oracle":
            scores = oracle_scores(test.weak, test.strong)
        else:
            scores = trained[name].score_many(convs)
        result.add(name, scores, test)


def evaluate(
    routers: Sequence[str],
    data_dir: Path | None = None,
    folds: int = 5,
    seed: int = 0,
    progress: bool = True,
    transfer: bool = True,
    encoder_profile: str = DEFAULT_PROFILE,
    data: Mapping[str, LabeledPrompts] | None = None,
) -> list[SettingResult]:
    """Run CV on MMLU and GSM8K (and both transfer directions) for ``routers``.

    ``data`` passes the data sets already loaded (by name); otherwise MMLU and GSM8K are read
    from ``data_dir``. Labelled traffic (named :data:`~router_models.labels.LABELS_NAME`) gets
    its own CV and, with ``transfer``, a setting trained on the public sets and tested on it.
    """
    from tqdm.auto import tqdm

    names = _ordered(routers)
    data = dict(data) if data is not None else {n: load_dataset(n, data_dir) for n in ("mmlu", "gsm8k")}
    encoder = MiniLMEncoder.for_training(encoder_profile)
    if any(n in ROUTERS and get_spec(n).latency_class == "embedding" for n in names):
        warm_embeddings(encoder, list(data.values()), progress)
    jobs: list[tuple[str, LabeledPrompts, LabeledPrompts, SettingResult]] = []
    results: list[SettingResult] = []
    for ds, d in data.items():
        res = SettingResult(f"{ds} {folds}-fold CV")
        results.append(res)
        fold_id = group_folds(d.prompts, folds, seed)
        for k in range(folds):
            jobs.append(
                (f"{ds} fold {k}", d.subset(np.flatnonzero(fold_id != k)), d.subset(np.flatnonzero(fold_id == k)), res)
            )
    if transfer:
        for src, dst in (("mmlu", "gsm8k"), ("gsm8k", "mmlu")):
            if src in data and dst in data:
                res = SettingResult(f"train {src} -> test {dst}")
                results.append(res)
                jobs.append((res.name, data[src], data[dst], res))
        public = [d for n, d in data.items() if n in DATASETS]
        if LABELS_NAME in data and public:
            # What the shipped kind of router does on the operator's traffic, beside the
            # labels' own cross-validation above: is training on them worth it?
            source = concat(public)
            res = SettingResult(f"train {source.name} -> test {LABELS_NAME}")
            results.append(res)
            jobs.append((res.name, source, data[LABELS_NAME], res))
    for label, train, test, res in tqdm(jobs, desc="eval", disable=not progress):
        del label
        _run_split(res, names, train, test, encoder, seed)
    return results


def format_table(results: Sequence[SettingResult]) -> str:
    """Plain-text table: setting, router, APGR, CPT(50%), CPT(80%) (mean ± std over folds)."""
    lines = [f"{'setting':<32} {'router':<10} {'APGR':>13} {'CPT(50%)':>15} {'CPT(80%)':>15}"]
    for res in results:
        for router in res.folds:
            s = res.summary(router)
            lines.append(
                f"{res.name:<32} {router:<10} {s['apgr']:>6.3f} ±{s['apgr_std']:.3f} "
                f"{100 * s['cpt50']:>6.1f}% ±{100 * s['cpt50_std']:4.1f} "
                f"{100 * s['cpt80']:>6.1f}% ±{100 * s['cpt80_std']:4.1f}"
            )
    return "\n".join(lines)


def write_report(results: Sequence[SettingResult], out_dir: Path) -> dict[str, Path]:
    """Write ``eval.json``, ``eval.txt`` and ``cost_quality.png`` to ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        res.name: {r: {"summary": res.summary(r), "folds": [m.as_dict() for m in ms]} for r, ms in res.folds.items()}
        for res in results
    }
    json_path = out_dir / "eval.json"
    json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    txt_path = out_dir / "eval.txt"
    txt_path.write_text(format_table(results) + "\n", encoding="utf-8")
    cols = 2
    rows = (len(results) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4.2 * rows), squeeze=False)
    for ax, res in zip(axes.ravel(), results, strict=False):
        for router, curves in res.curves.items():
            ax.plot(
                100 * GRID,
                100 * np.mean(curves, axis=0),
                label=f"{router} (APGR {res.summary(router)['apgr']:.3f})",
                linestyle="--" if router in BASELINES else "-",
            )
        ax.set_title(res.name)
        ax.set_xlabel("requests sent to the large model (%)")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    for ax in axes.ravel()[len(results) :]:
        ax.axis("off")
    fig.tight_layout()
    png_path = out_dir / "cost_quality.png"
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return {"json": json_path, "txt": txt_path, "png": png_path}
