"""Eighth router round: do subject-centred targets and features transfer better (MMLU -> GSM8K)?

Cross-dataset transfer is close to random (APGR 0.49-0.60, docs/routers.md). One reading is
that an MMLU-trained router mostly learns *which subjects* are hard for Mixtral ("knowing only
the subject gives 0.683"), which says nothing about GSM8K. If so, taking the subject out of
what the model can learn (a per-subject-centred gain target, and optionally per-subject-centred
embeddings) should leave within-subject difficulty cues that carry over to a new domain.

For each variant this prints MMLU -> GSM8K APGR / CPT(50%) (train on all of MMLU, score all of
GSM8K) and, out of fold on MMLU (the eval's 5 group folds, seed 0), the overall APGR and the
mean APGR *within* subjects (subjects with at least 100 prompts), which the centring targets.
A bootstrap over GSM8K prompts gives the spread of the transfer figure. Uses the cached int8
MiniLM embeddings (``slm-router eval`` fills the cache); ~2 min on 2 cores once cached.

    python -m benchmarks.transfer_centred
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import Ridge

from router_models.data import LabeledPrompts, load_dataset
from router_models.embedding import EmbeddedFeatures, EmbeddingConfig, embed_dataset
from router_models.encoder import MiniLMEncoder
from router_models.features import feature_matrix
from router_models.heads import fit_gain_head, gain_labels
from router_models.metrics import routing_metrics
from router_models.splits import group_folds

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
#: The shipped embedding router's settings (shape-feature weight, head regularisation).
SHIPPED = EmbeddingConfig()


def centred_by_group(values: FloatArray, groups: npt.NDArray[np.str_]) -> FloatArray:
    """``values`` (1-D or 2-D) minus the mean of their group, row by row."""
    out = values.astype(np.float64).copy()
    for group in np.unique(groups):
        rows = groups == group
        out[rows] -= out[rows].mean(axis=0)
    return out


def within_group_apgr(scores: FloatArray, data: LabeledPrompts, min_rows: int = 100) -> float:
    """Mean APGR inside each subject with at least ``min_rows`` prompts and a positive gap."""
    subjects = np.asarray(data.subject)
    values = []
    for subject in np.unique(subjects):
        rows = subjects == subject
        if rows.sum() < min_rows:
            continue
        apgr = routing_metrics(scores[rows], data.weak[rows], data.strong[rows]).apgr
        if np.isfinite(apgr):
            values.append(apgr)
    return float(np.mean(values))


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table (no options)."""
    del argv
    encoder = MiniLMEncoder.for_training()
    mmlu, gsm8k = load_dataset("mmlu"), load_dataset("gsm8k")
    texts_m, emb_m = embed_dataset(mmlu, encoder)
    texts_g, emb_g = embed_dataset(gsm8k, encoder)
    shape_m = feature_matrix(texts_m)
    # The embedding router's own feature rows, standardised on MMLU as its training does.
    embedded = EmbeddedFeatures(
        encoder,
        shape_m.mean(axis=0).astype(np.float32),
        np.maximum(shape_m.std(axis=0), 1e-6).astype(np.float32),
        SHIPPED.shape_weight,
    )

    def features(emb: npt.NDArray[np.float32], texts: Sequence[str]) -> FloatArray:
        return embedded.from_embeddings(emb, texts, [1] * len(texts))

    gain_m = gain_labels(mmlu.weak, mmlu.strong)
    subjects = np.asarray(mmlu.subject)
    centred_gain = centred_by_group(gain_m.astype(np.float64), subjects)
    folds = group_folds(mmlu.prompts, 5, 0)

    def out_of_fold(fit_score: Callable[[BoolArray, BoolArray], FloatArray]) -> FloatArray:
        scores = np.zeros(len(mmlu))
        for fold in range(5):
            train, test = folds != fold, folds == fold
            scores[test] = fit_score(train, test)
        return scores

    def report(name: str, transfer: FloatArray, in_domain: FloatArray | None) -> None:
        t = routing_metrics(transfer, gsm8k.weak, gsm8k.strong)
        line = f"{name:52s} MMLU->GSM8K APGR {t.apgr:.3f} CPT(50%) {t.cpt50:.1%}"
        if in_domain is not None:
            overall = routing_metrics(in_domain, mmlu.weak, mmlu.strong).apgr
            line += f" | MMLU 5-fold APGR {overall:.3f}, within subjects {within_group_apgr(in_domain, mmlu):.3f}"
        print(line, flush=True)

    x_m, x_g = features(emb_m, texts_m), features(emb_g, texts_g)
    shipped = fit_gain_head(x_m, gain_m, SHIPPED.c, 0).score(x_g)
    report(
        "3-class gain LR (the shipped embedding head)",
        shipped,
        out_of_fold(lambda tr, te: fit_gain_head(x_m[tr], gain_m[tr], SHIPPED.c, 0).score(x_m[te])),
    )

    def ridge(x: FloatArray, x_test: FloatArray, alpha: float, centred: bool) -> tuple[FloatArray, FloatArray]:
        """Transfer scores (fit on all of MMLU) and out-of-fold MMLU scores of one ridge variant."""

        def target(rows: BoolArray) -> FloatArray:
            gain = gain_m[rows].astype(np.float64)
            return centred_by_group(gain, subjects[rows]) if centred else gain

        everything = np.ones(len(mmlu), dtype=bool)
        transfer = Ridge(alpha=alpha).fit(x, target(everything)).predict(x_test)
        in_domain = out_of_fold(lambda tr, te: Ridge(alpha=alpha).fit(x[tr], target(tr)).predict(x[te]))
        return transfer, in_domain

    for alpha in (10.0, 100.0):
        report(f"ridge on the gain, alpha {alpha:g}", *ridge(x_m, x_g, alpha, centred=False))
    for alpha in (10.0, 100.0):
        report(f"ridge on the subject-centred gain, alpha {alpha:g}", *ridge(x_m, x_g, alpha, centred=True))
    # Embeddings centred per subject; GSM8K on its own mean (in serving: a running mean of traffic).
    xc_m = features(centred_by_group(emb_m.astype(np.float64), subjects).astype(np.float32), texts_m)
    xc_g = features((emb_g - emb_g.mean(axis=0)).astype(np.float32), texts_g)
    for alpha in (10.0, 100.0):
        report(f"ridge, centred embeddings + centred gain, alpha {alpha:g}", *ridge(xc_m, xc_g, alpha, centred=True))
    report("3-class gain LR on centred embeddings", fit_gain_head(xc_m, gain_m, SHIPPED.c, 0).score(xc_g), None)
    s_m = (shape_m - embedded.shape_mean) / embedded.shape_std
    s_g = (feature_matrix(texts_g) - embedded.shape_mean) / embedded.shape_std
    report("ridge on shape features only, centred gain", *ridge(s_m, s_g, 10.0, centred=True))

    centred = Ridge(alpha=10.0).fit(x_m, centred_gain).predict(x_g)
    rng = np.random.default_rng(0)
    base, diffs = [], []
    for _ in range(200):
        rows = rng.integers(0, len(gsm8k), len(gsm8k))
        a = routing_metrics(shipped[rows], gsm8k.weak[rows], gsm8k.strong[rows]).apgr
        b = routing_metrics(centred[rows], gsm8k.weak[rows], gsm8k.strong[rows]).apgr
        base.append(a)
        diffs.append(b - a)
    print(
        f"bootstrap over GSM8K prompts (200): shipped head APGR sd {np.std(base):.3f}; "
        f"centred-gain ridge (alpha 10) minus shipped {np.mean(diffs):+.3f}, "
        f"90% interval {np.percentile(diffs, 5):+.3f} .. {np.percentile(diffs, 95):+.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
