"""Fine-tune MiniLM end to end on the routing gain, inside the eval's 5 group folds (GPU step).

Runs where PyTorch and transformers are installed but this project's environment is not (the
lent GPU machine); reads ``.finetune/`` written by ``benchmarks/finetune_encoder.py prepare`` and
writes ``scores.npz`` (each held-out row's score per data set, configuration, seed and epoch) and
``log.txt`` to ``--out``. Units run in priority order and stop starting new ones once
``--budget-s`` has passed, so a time-boxed machine always returns what finished.

Model: MiniLM's six layers, mean pooling over tokens, dropout 0.1, a 3-class head on the gain
``strong - weak`` (the same target and score mapping as the shipped heads: ``p(+1) + p(0)/2``);
AdamW, linear warm-up (10%) and decay, bf16 autocast on CUDA, 256 tokens, batch 32.

    python benchmarks/finetune_encoder_gpu.py --out $OUT
    python benchmarks/finetune_encoder_gpu.py --limit 40 --max-folds 1 --plan smoke   # CPU check of the code path
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging


@dataclass(frozen=True)
class Config:
    """One training recipe."""

    name: str
    lr: float
    epochs: int
    seeds: tuple[int, ...] = (0,)
    batch: int = 32
    head_lr: float = 1e-3


PLANS: dict[str, list[tuple[Config, tuple[str, ...]]]] = {
    # Priority order: one recipe on both data sets, two other learning rates, cross-data-set
    # transfer, then more seeds of the first recipe.
    "full": [
        (Config("lr5e-5", 5e-5, 4), ("mmlu", "gsm8k")),
        (Config("lr1e-4", 1e-4, 4), ("mmlu", "gsm8k")),
        (Config("lr2e-5", 2e-5, 4), ("mmlu", "gsm8k")),
        (Config("lr5e-5", 5e-5, 3), ("transfer",)),
        (Config("lr5e-5", 5e-5, 4, seeds=(1, 2)), ("mmlu", "gsm8k")),
    ],
    # What "full" left when its first run's budget ran out (a second, shorter run on the same machine).
    "rest": [
        (Config("lr5e-5", 5e-5, 3), ("transfer",)),
        (Config("lr1e-4", 1e-4, 4), ("gsm8k",)),
        (Config("lr2e-5", 2e-5, 4), ("gsm8k",)),
        (Config("lr5e-5", 5e-5, 4, seeds=(1, 2)), ("gsm8k",)),
    ],
    "smoke": [
        (Config("smoke", 5e-5, 2, seeds=(0, 1), batch=8), ("mmlu", "gsm8k")),
        (Config("smoke", 5e-5, 1, batch=8), ("transfer",)),
    ],
}


def _metrics_module(repo: Path) -> Any:
    # Load router_models/metrics.py by path: the package's __init__ needs the project's own deps.
    spec = importlib.util.spec_from_file_location("rm_metrics", repo / "router_models" / "metrics.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


class GainModel(nn.Module):  # type: ignore[misc]  # torch is not type-checked here
    """MiniLM + mean pooling + a 3-class gain head."""

    def __init__(self, model_dir: Path) -> None:
        super().__init__()
        self.encoder = AutoModel.from_pretrained(model_dir, dtype=torch.float32)
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(self.encoder.config.hidden_size, 3)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(gain logits, mean-pooled embedding)."""
        hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
        return self.head(self.dropout(pooled)), pooled


class Run:
    """Shared state: device, tokenised data sets, output."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model_dir = args.work / "minilm"
        self.tok = AutoTokenizer.from_pretrained(self.model_dir)
        raw = json.loads(gzip.decompress((args.work / "data.json.gz").read_bytes()))
        self.data: dict[str, dict[str, Any]] = {}
        for name, d in raw.items():
            n = len(d["texts"]) if args.limit is None else min(args.limit, len(d["texts"]))
            enc = self.tok(d["texts"][:n], truncation=True, max_length=256)
            self.data[name] = {
                "ids": enc["input_ids"],
                "gain": np.array(d["strong"][:n]) - np.array(d["weak"][:n]) + 1,
                "weak": np.array(d["weak"][:n]),
                "strong": np.array(d["strong"][:n]),
                "fold": np.array(d["fold"][:n]),
            }
        self.metrics = _metrics_module(args.repo)
        self.scores: dict[str, np.ndarray] = {}
        self.started = time.time()
        args.out.mkdir(parents=True, exist_ok=True)
        self.log_file = (args.out / "log.txt").open("a", encoding="utf-8")
        self.log(f"device {self.device} ({torch.cuda.get_device_name() if self.device.type == 'cuda' else 'cpu'})")

    def log(self, line: str) -> None:
        line = f"[{time.time() - self.started:6.1f}s] {line}"
        print(line, flush=True)
        self.log_file.write(line + "\n")
        self.log_file.flush()

    def save(self) -> None:
        np.savez(self.args.out / "scores.npz", **self.scores)  # type: ignore[arg-type]

    def batches(self, ids: list[list[int]], rows: np.ndarray, batch: int) -> Any:
        pad = self.tok.pad_token_id
        for i in range(0, len(rows), batch):
            chunk = [ids[j] for j in rows[i : i + batch]]
            width = max(len(c) for c in chunk)
            x = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, c in enumerate(chunk):
                x[r, : len(c)] = torch.tensor(c)
                mask[r, : len(c)] = 1
            yield x.to(self.device, non_blocking=True), mask.to(self.device, non_blocking=True)

    def fit_predict(
        self, cfg: Config, seed: int, train: tuple[list[list[int]], np.ndarray], test_ids: list[list[int]]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Train on ``train`` (ids, gain classes); return the test scores after every epoch.

        Two scores per epoch: the fine-tuned head's, and the shipped kNN rule (K = 100,
        softmax weights at temperature 0.3 over cosine similarity of centred embeddings, mean
        neighbour gain) on the fine-tuned embeddings of the training rows.
        """
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        model = GainModel(self.model_dir).to(self.device)
        ids, y = train
        steps = cfg.epochs * math.ceil(len(ids) / cfg.batch)
        opt = torch.optim.AdamW(
            [
                {"params": model.encoder.parameters(), "lr": cfg.lr},
                {"params": model.head.parameters(), "lr": cfg.head_lr},
            ],
            weight_decay=0.01,
        )
        warm = max(1, steps // 10)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm)))
        )
        y_t = torch.tensor(y, dtype=torch.long)
        amp = self.device.type == "cuda"
        out: list[tuple[np.ndarray, np.ndarray]] = []
        for _epoch in range(cfg.epochs):
            model.train()
            order = rng.permutation(len(ids))
            for b, (x, mask) in enumerate(self.batches(ids, order, cfg.batch)):
                target = y_t[order[b * cfg.batch : (b + 1) * cfg.batch]].to(self.device)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
                    loss = nn.functional.cross_entropy(model(x, mask)[0].float(), target)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
            head, test_emb = self.predict(model, test_ids)
            _, train_emb = self.predict(model, ids)
            out.append((head, self.knn(train_emb, y - 1, test_emb)))
        return out

    def predict(self, model: GainModel, ids: list[list[int]]) -> tuple[np.ndarray, torch.Tensor]:
        """(head scores, pooled embeddings on the device) for ``ids``."""
        with torch.no_grad():
            return self._predict(model, ids)

    def _predict(self, model: GainModel, ids: list[list[int]]) -> tuple[np.ndarray, torch.Tensor]:
        model.eval()
        # Longest first keeps padding low; the order is undone below.
        order = np.argsort([-len(i) for i in ids], kind="stable")
        probs = torch.zeros((len(ids), 3), device=self.device)
        emb = torch.zeros((len(ids), model.head.in_features), device=self.device)
        amp = self.device.type == "cuda"
        for b, (x, mask) in enumerate(self.batches(ids, order, 256)):
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
                logits, pooled = model(x, mask)
            rows = torch.as_tensor(order[b * 256 : (b + 1) * 256], device=self.device)
            probs[rows] = torch.softmax(logits.float(), dim=-1)
            emb[rows] = pooled.float()
        p = probs.cpu().numpy()
        return np.clip(p[:, 2] + 0.5 * p[:, 1], 0.0, 1.0), emb

    def knn(
        self, train: torch.Tensor, gain: np.ndarray, test: torch.Tensor, k: int = 100, tau: float = 0.3
    ) -> np.ndarray:
        """Mean neighbour gain, softmax-weighted by cosine similarity, mapped to [0, 1]."""
        with torch.no_grad():
            return self._knn(train, gain, test, k, tau)

    def _knn(self, train: torch.Tensor, gain: np.ndarray, test: torch.Tensor, k: int, tau: float) -> np.ndarray:
        mu = train.mean(0, keepdim=True)
        a = nn.functional.normalize(train - mu, dim=1)
        b = nn.functional.normalize(test - mu, dim=1)
        g = torch.as_tensor(gain, dtype=torch.float32, device=self.device)
        out = []
        for i in range(0, len(b), 1024):
            sim, idx = (b[i : i + 1024] @ a.T).topk(min(k, len(a)), dim=1)
            w = torch.softmax(sim / tau, dim=1)
            out.append(((1.0 + (w * g[idx]).sum(1)) / 2.0).cpu().numpy())
        return np.concatenate(out)

    def apgr(self, scores: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> float:
        return float(self.metrics.routing_metrics(scores, weak, strong).apgr)

    def cv(self, cfg: Config, name: str) -> None:
        d = self.data[name]
        folds = min(int(d["fold"].max()) + 1, self.args.max_folds)
        for seed in cfg.seeds:
            epochs = [np.zeros(len(d["gain"])) for _ in range(cfg.epochs)]
            knn = [np.zeros(len(d["gain"])) for _ in range(cfg.epochs)]
            for k in range(folds):
                tr = np.flatnonzero(d["fold"] != k)
                te = np.flatnonzero(d["fold"] == k)
                t0 = time.time()
                preds = self.fit_predict(
                    cfg, seed, ([d["ids"][i] for i in tr], d["gain"][tr]), [d["ids"][i] for i in te]
                )
                for e, (p, q) in enumerate(preds):
                    epochs[e][te] = p
                    knn[e][te] = q
                head = " ".join(f"{self.apgr(p, d['weak'][te], d['strong'][te]):.3f}" for p, _ in preds)
                nn_ = " ".join(f"{self.apgr(q, d['weak'][te], d['strong'][te]):.3f}" for _, q in preds)
                self.log(
                    f"{name} {cfg.name} seed {seed} fold {k}: APGR by epoch, head {head}, knn {nn_}"
                    f" ({time.time() - t0:.1f}s)"
                )
            for e in range(cfg.epochs):
                self.scores[f"{name}/{cfg.name}-s{seed}-e{e + 1}"] = epochs[e]
                self.scores[f"{name}/{cfg.name}-knn-s{seed}-e{e + 1}"] = knn[e]
            self.save()
            self.log(f"{name} {cfg.name} seed {seed}: mean fold APGR by epoch, head {self.fold_mean(d, epochs)}")
            self.log(f"{name} {cfg.name} seed {seed}: mean fold APGR by epoch, knn {self.fold_mean(d, knn)}")

    def fold_mean(self, d: dict[str, Any], epochs: list[np.ndarray]) -> str:
        folds = min(int(d["fold"].max()) + 1, self.args.max_folds)
        means = []
        for s in epochs:
            ks = [d["fold"] == k for k in range(folds)]
            means.append(np.mean([self.apgr(s[m], d["weak"][m], d["strong"][m]) for m in ks]))
        return " ".join(f"{m:.3f}" for m in means)

    def transfer(self, cfg: Config) -> None:
        for src, dst in (("mmlu", "gsm8k"), ("gsm8k", "mmlu")):
            s, t = self.data[src], self.data[dst]
            t0 = time.time()
            preds = self.fit_predict(cfg, 0, (s["ids"], s["gain"]), t["ids"])
            for e, (p, q) in enumerate(preds):
                self.scores[f"transfer/{src}->{dst}/{cfg.name}-e{e + 1}"] = p
                self.scores[f"transfer/{src}->{dst}/{cfg.name}-knn-e{e + 1}"] = q
            apgrs = " ".join(f"{self.apgr(p, t['weak'], t['strong']):.3f}" for p, _ in preds)
            self.log(f"transfer {src} -> {dst} {cfg.name}: APGR by epoch {apgrs} ({time.time() - t0:.1f}s)")
            self.save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path(".finetune"))
    parser.add_argument("--repo", type=Path, default=Path("."))
    parser.add_argument("--out", type=Path, default=Path(".finetune/out"))
    parser.add_argument("--plan", choices=sorted(PLANS), default="full")
    parser.add_argument("--budget-s", type=float, default=420.0, help="start no new unit after this")
    parser.add_argument("--limit", type=int, default=None, help="first N rows of each data set (code check)")
    parser.add_argument("--max-folds", type=int, default=5, help="run only the first N folds (code check)")
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # one bar per fold and seed would bury the log
    run = Run(args)
    for cfg, targets in PLANS[args.plan]:
        for target in targets:
            if time.time() - run.started > args.budget_s:
                run.log(f"budget spent: skipped {cfg.name} {target}")
                continue
            if target == "transfer":
                run.transfer(cfg)
            else:
                run.cv(cfg, target)
    run.log("done")


if __name__ == "__main__":
    main()
