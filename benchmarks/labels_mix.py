"""Should a router for your traffic train on your labels alone, or on them plus the public sets?

``slm-router train --labels`` can train on labelled traffic alone (``--datasets none``) or add
MMLU and GSM8K. Stand-in for "your traffic": GSM8K (1,307 labelled prompts, a domain the public
MMLU set does not cover). Inside the eval's 5 group folds (seed 0) each router is trained on
the training fold alone and on the training fold plus all of MMLU, and both are scored on the
test fold; the MMLU-only row is the shipped kind of router meeting new traffic.

    python -m benchmarks.labels_mix

Uses the cached int8 MiniLM embeddings; ~10 min on 2 cores.
"""

from __future__ import annotations

import time

import numpy as np

from router_models.base import Router
from router_models.data import LabeledPrompts, concat, load_dataset
from router_models.encoder import MiniLMEncoder
from router_models.metrics import routing_metrics
from router_models.registry import train_routers
from router_models.splits import group_folds
from router_models.training import warm_embeddings

ROUTERS = ("lexical", "embedding", "knn", "ensemble", "stacked")


def _train(train: LabeledPrompts, encoder: MiniLMEncoder) -> dict[str, Router]:
    return train_routers(ROUTERS, train, 0, encoder)


def _scores(routers: dict[str, Router], test: LabeledPrompts) -> dict[str, tuple[float, float]]:
    out = {}
    for name, router in routers.items():
        m = routing_metrics(router.score_many(test.conversations()), test.weak, test.strong)
        out[name] = (m.apgr, m.cpt50)
    return out


def main() -> None:
    started = time.perf_counter()
    encoder = MiniLMEncoder.for_training()
    traffic, public = load_dataset("gsm8k"), load_dataset("mmlu")
    warm_embeddings(encoder, [traffic, public], progress=False)
    fold_id = group_folds(traffic.prompts, 5, 0)
    public_only = _train(public, encoder)  # the same for every fold
    rows: dict[str, list[dict[str, tuple[float, float]]]] = {"labels only": [], "labels + MMLU": [], "MMLU only": []}
    for k in range(5):
        train = traffic.subset(np.flatnonzero(fold_id != k))
        test = traffic.subset(np.flatnonzero(fold_id == k))
        rows["labels only"].append(_scores(_train(train, encoder), test))
        rows["labels + MMLU"].append(_scores(_train(concat([train, public]), encoder), test))
        rows["MMLU only"].append(_scores(public_only, test))
        print(f"fold {k} done ({time.perf_counter() - started:.0f} s)", flush=True)
    print("\nGSM8K as your traffic, 5-fold: APGR / CPT(50%), mean over folds")
    print(f"{'training data':<16}" + "".join(f"{r:>18}" for r in ROUTERS))
    for label, folds in rows.items():
        cells = []
        for r in ROUTERS:
            apgr = np.mean([f[r][0] for f in folds])
            cpt = 100 * np.nanmean([f[r][1] for f in folds])
            cells.append(f"{f'{apgr:.3f} / {cpt:.1f}%':>18}")
        print(f"{label:<16}" + "".join(cells))
    print(f"\nwall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
