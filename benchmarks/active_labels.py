"""Tenth router round: which of your prompts should you pay to label?

The ninth round found the routers short of labels (docs/routers.md), and labelling your own
traffic costs two model calls and a grade per prompt. So the prompts an operator picks matter:
if a smarter pick reached the same APGR with fewer labels, ``slm-router label`` should pick that
way. This simulates it inside the eval's 5 group folds (seed 0): each training fold is the
unlabelled pool, the same random 1/8 of it is labelled first (as in the learning curve), and the
labelled set then doubles twice (to 1/4 and 1/2 of the pool), each time choosing the new prompts
by one strategy and retraining. Strategies:

- ``random``: the learning curve's own draw (the baseline);
- ``entropy``: the prompts whose 3-class gain is most uncertain under a linear head fitted on
  the labels so far (MiniLM embeddings, the ``embedding`` router's features);
- ``gain-likely``: the prompts that head thinks most likely to be a gain or a loss (the rare,
  informative classes: on MMLU ~80% of prompts are "both right" or "both wrong");
- ``diverse``: the pool prompt nearest each centre of a k-means over the unlabelled embeddings
  (one per new label), i.e. coverage of the traffic.

Prints mean APGR / CPT(50%) per strategy and labelled share for ``lexical``, ``embedding`` and
``stacked``, and the per-fold APGR difference to ``random`` (paired, same folds and test sets).

    python -m benchmarks.active_labels [--sets mmlu,gsm8k] [--strategies random,entropy,...]

Uses the cached int8 MiniLM embeddings; ~35 min on 2 cores.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from router_models.conversation import render_conversation
from router_models.data import load_dataset
from router_models.encoder import MiniLMEncoder
from router_models.heads import fit_gain_head, gain_labels
from router_models.metrics import routing_metrics
from router_models.registry import train_routers
from router_models.splits import group_folds
from router_models.training import warm_embeddings

ROUTERS = ("lexical", "embedding", "stacked")
SEED_SHARE = 0.125
SHARES = (0.25, 0.5)
Index = npt.NDArray[np.intp]


Emb = npt.NDArray[np.float64]
Gain = npt.NDArray[np.int64]


def _head_proba(emb: Emb, gain: Gain, labelled: Index, pool: Index, seed: int) -> npt.NDArray[np.float64]:
    head = fit_gain_head(emb[labelled], gain[labelled], 0.3, seed)
    return head.proba(emb[pool])


def _entropy(emb: Emb, gain: Gain, labelled: Index, pool: Index, n: int, seed: int) -> Index:
    p = np.clip(_head_proba(emb, gain, labelled, pool, seed), 1e-12, 1.0)
    entropy = -(p * np.log(p)).sum(axis=1)
    return pool[np.argsort(-entropy)[:n]]


def _gain_likely(emb: Emb, gain: Gain, labelled: Index, pool: Index, n: int, seed: int) -> Index:
    p = _head_proba(emb, gain, labelled, pool, seed)
    return pool[np.argsort(p[:, 1])[:n]]  # lowest P(no difference) first


def _diverse(emb: Emb, gain: Gain, labelled: Index, pool: Index, n: int, seed: int) -> Index:
    from sklearn.cluster import MiniBatchKMeans

    x = emb[pool]
    km = MiniBatchKMeans(n_clusters=n, random_state=seed, n_init=1, batch_size=4096).fit(x)
    # Nearest unused pool row to each centre (greedy, so every centre yields a distinct row).
    dist = ((x**2).sum(1)[None, :] - 2 * km.cluster_centers_ @ x.T).astype(np.float64)
    picked: list[int] = []
    used = np.zeros(len(pool), dtype=bool)
    for row in dist:
        row[used] = np.inf
        j = int(np.argmin(row))
        used[j] = True
        picked.append(j)
    return pool[np.asarray(picked, dtype=np.intp)]


# (embeddings, gain of every row, labelled rows, unlabelled rows, how many to add, seed) -> rows to add
Strategy = Callable[[Emb, Gain, Index, Index, int, int], Index]
STRATEGIES: dict[str, Strategy | None] = {
    "random": None,
    "entropy": _entropy,
    "gain-likely": _gain_likely,
    "diverse": _diverse,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="mmlu,gsm8k")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    strategies = args.strategies.split(",")
    encoder = MiniLMEncoder.for_training()
    started = time.perf_counter()
    for name in args.sets.split(","):
        d = load_dataset(name)
        warm_embeddings(encoder, [d], progress=False)
        emb = np.asarray(
            encoder.encode_cached([render_conversation(c) for c in d.conversations()], progress=False), dtype=np.float64
        )
        gain = gain_labels(d.weak, d.strong)
        fold_id = group_folds(d.prompts, args.folds, args.seed)
        # apgr[strategy][share][router] -> per-fold values
        apgr: dict[str, dict[float, dict[str, list[float]]]] = {
            s: {sh: {r: [] for r in ROUTERS} for sh in SHARES} for s in strategies
        }
        cpt: dict[str, dict[float, dict[str, list[float]]]] = {
            s: {sh: {r: [] for r in ROUTERS} for sh in SHARES} for s in strategies
        }
        rows: dict[float, list[int]] = {sh: [] for sh in SHARES}
        for k in range(args.folds):
            test = d.subset(np.flatnonzero(fold_id == k))
            convs = test.conversations()
            rng = np.random.default_rng(args.seed * 1000 + k)  # the learning curve's draw
            order = rng.permutation(np.flatnonzero(fold_id != k))
            start = order[: round(SEED_SHARE * len(order))]
            for strategy in strategies:
                labelled = start
                for share in SHARES:
                    target = round(share * len(order))
                    pick = STRATEGIES[strategy]
                    if pick is None:
                        labelled = order[:target]
                    else:
                        pool = np.setdiff1d(order, labelled)
                        labelled = np.concatenate(
                            [labelled, pick(emb, gain, labelled, pool, target - len(labelled), k)]
                        )
                    if strategy == strategies[0]:
                        rows[share].append(len(labelled))
                    trained = train_routers(ROUTERS, d.subset(np.sort(labelled)), args.seed, encoder)
                    for r in ROUTERS:
                        m = routing_metrics(trained[r].score_many(convs), test.weak, test.strong)
                        apgr[strategy][share][r].append(m.apgr)
                        cpt[strategy][share][r].append(m.cpt50)
            print(f"{name} fold {k} done ({time.perf_counter() - started:.0f} s)", flush=True)
        print(f"\n{name}: mean over {args.folds} folds; labelled first: a random {SEED_SHARE:g} of each training fold")
        cols = "".join(f"{f'{sh:g} ({int(np.mean(rows[sh]))} rows)':>22}" for sh in SHARES)
        print(f"{'strategy':<12}{'router':<10}{cols}   APGR vs random per fold at {SHARES[-1]:g}")
        for s in strategies:
            for r in ROUTERS:
                cells = "".join(
                    f"{f'{np.mean(apgr[s][sh][r]):.3f} / {100 * np.nanmean(cpt[s][sh][r]):.1f}%':>22}" for sh in SHARES
                )
                diff = ""
                if "random" in strategies and s != "random":
                    delta = np.array(apgr[s][SHARES[-1]][r]) - np.array(apgr["random"][SHARES[-1]][r])
                    diff = f"   {delta.mean():+.3f} (" + " ".join(f"{v:+.3f}" for v in delta) + ")"
                print(f"{s:<12}{r:<10}{cells}{diff}")
        print()
    print(f"wall time {time.perf_counter() - started:.0f} s; seed {args.seed}")


if __name__ == "__main__":
    main()
