"""Ninth router round: would more labelled prompts of this kind close the gap to the goals?

The routers plateau short of the quality goals (docs/routers.md). If they are short of *data*,
APGR should still climb as the training set grows; if they are short of *signal*, it flattens.
This retrains the routers inside the eval's 5 group folds (seed 0) on a random share of each
training fold (the test folds stay whole) and prints mean APGR and CPT(50%) per share, with a
straight-line fit of APGR against log2(training rows) over the upper half of the curve: the
gain per doubling of the data, and the doublings the goal would need if the line held.

    python -m benchmarks.learning_curve [--routers lexical,embedding,knn,ensemble,stacked]

Uses the cached int8 MiniLM embeddings (``slm-router eval`` fills the cache; ~2 min to embed
both sets otherwise); ~30 min on 2 cores with all five routers.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from router_models.conversation import as_conversation
from router_models.data import load_dataset
from router_models.encoder import MiniLMEncoder
from router_models.metrics import routing_metrics
from router_models.registry import train_routers
from router_models.splits import group_folds
from router_models.training import warm_embeddings

SHARES = (0.125, 0.25, 0.5, 1.0)
GOALS = {"mmlu": 0.75, "gsm8k": 0.70}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routers", default="lexical,embedding,knn,ensemble,stacked")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sets", default="mmlu,gsm8k", help="data sets to run, comma-separated")
    args = parser.parse_args()
    routers = args.routers.split(",")
    encoder = MiniLMEncoder.for_training()
    data = {name: load_dataset(name) for name in args.sets.split(",")}
    warm_embeddings(encoder, list(data.values()), progress=False)
    started = time.perf_counter()
    for name, d in data.items():
        fold_id = group_folds(d.prompts, args.folds, args.seed)
        # apgr[router][share] -> per-fold values; rows[share] -> training rows per fold
        apgr: dict[str, dict[float, list[float]]] = {r: {s: [] for s in SHARES} for r in routers}
        cpt50: dict[str, dict[float, list[float]]] = {r: {s: [] for s in SHARES} for r in routers}
        rows: dict[float, list[int]] = {s: [] for s in SHARES}
        for k in range(args.folds):
            train_all = np.flatnonzero(fold_id != k)
            test = d.subset(np.flatnonzero(fold_id == k))
            convs = [as_conversation(p) for p in test.prompts]
            rng = np.random.default_rng(args.seed * 1000 + k)
            order = rng.permutation(train_all)
            for share in SHARES:
                take = np.sort(order[: max(50, round(share * len(order)))])
                train = d.subset(take)
                rows[share].append(len(take))
                trained = train_routers(routers, train, args.seed, encoder)
                for router in routers:
                    metrics = routing_metrics(trained[router].score_many(convs), test.weak, test.strong)
                    apgr[router][share].append(metrics.apgr)
                    cpt50[router][share].append(metrics.cpt50)
            print(f"{name} fold {k} done ({time.perf_counter() - started:.0f} s)", flush=True)
        print(f"\n{name}: mean over {args.folds} folds, APGR / CPT(50%) by share of each training fold")
        header = "router     " + "".join(f"{f'{s:g} ({int(np.mean(rows[s]))} rows)':>24}" for s in SHARES)
        print(header + "   APGR per doubling   doublings to goal")
        for router in routers:
            cells = "".join(
                f"{f'{np.mean(apgr[router][s]):.3f} / {100 * np.nanmean(cpt50[router][s]):.1f}%':>24}" for s in SHARES
            )
            upper = SHARES[len(SHARES) // 2 - 1 :]
            x = np.log2([np.mean(rows[s]) for s in upper])
            y = np.array([np.mean(apgr[router][s]) for s in upper])
            slope = float(np.polyfit(x, y, 1)[0])
            gap = GOALS[name] - y[-1]
            doublings = "met" if gap <= 0 else (f"{gap / slope:.1f}" if slope > 0 else "never")
            print(f"{router:<11}{cells}   {slope:+.4f}            {doublings}")
        print()
    print(f"wall time {time.perf_counter() - started:.0f} s; SHARES {SHARES}; seed {args.seed}")


if __name__ == "__main__":
    main()
