"""Stacked router: the ensemble's three components plus a boosted "difficulty" model.

Four components are combined by their mean held-out percentile (:mod:`router_models.percentile`):

* ``lexical``, ``embedding`` and ``knn`` (similarity-weighted mean gain of the 100 nearest training
  prompts), as in the ensemble;
* ``boosted``: gradient-boosted trees (scikit-learn ``HistGradientBoostingClassifier``, 3-class
  routing gain, scored ``P(+1) + ½·P(0)`` like the heads) over 11 statistics of the request's
  nearest training prompts (weighted mean gain at K = 10/30/100/300, weak- and strong-model
  accuracy at K = 30/100, top-1/10/100 mean similarity), the 13 shape features and 12
  answer-choice features (:func:`router_models.features.choice_features`). The trees can use
  the weak and strong neighbour accuracies separately and non-linearly (a neighbourhood where
  both models fail is not one where only the large model succeeds).

The boosted model's training rows need neighbour statistics that do not include the row itself
or its duplicates, so they are computed out of fold: training prompts are split into 5 groups
(identical prompts together), and each group's statistics come from an index built on the other
four. At serving time the index holds every training prompt. Percentile tables come from an
inner 80/20 split, as for the ensemble. One MiniLM embedding per request, shared by the
embedding head, the kNN index and the neighbour statistics; the trees cost ~0.3 ms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from router_models.base import Router
from router_models.data import LabeledPrompts
from router_models.embedding import EmbeddingConfig, EmbeddingRouter, embed_dataset, train_embedding, trained_encoder
from router_models.encoder import MiniLMEncoder
from router_models.errors import RouterArtifactError
from router_models.features import CHOICE_FEATURE_NAMES, FEATURE_NAMES, choice_matrix, feature_matrix
from router_models.heads import gain_labels
from router_models.knn import KnnConfig, KnnIndex, build_index
from router_models.lexical import LexicalConfig, LexicalRouter, train_lexical
from router_models.percentile import QUANTILES, PercentileRouter, percentile_table, unprefix
from router_models.splits import group_folds, holdout_split
from router_models.trees import TreeEnsemble, constant_trees, flatten_hgb

FloatArray = npt.NDArray[np.float64]
COMPONENTS = ("lexical", "embedding", "knn", "boosted")
NEIGHBOUR_STATS: tuple[str, ...] = (
    "gain_k10",
    "gain_k30",
    "gain_k100",
    "gain_k300",
    "weak_k30",
    "weak_k100",
    "strong_k30",
    "strong_k100",
    "sim_top1",
    "sim_top10",
    "sim_top100",
)
BOOSTED_FEATURES = NEIGHBOUR_STATS + FEATURE_NAMES + CHOICE_FEATURE_NAMES
_MAX_K = 300


@dataclass(frozen=True)
class BoostConfig:
    """Hyper-parameters of the boosted component (chosen by nested 5-fold CV, see docs)."""

    learning_rate: float = 0.05
    max_iter: int = 200
    max_leaf_nodes: int = 15
    min_samples_leaf: int = 80
    inner_folds: int = 5


@dataclass(frozen=True)
class StackedConfig:
    """Component configs plus the inner-split fraction used for the percentile tables."""

    lexical: dict[str, Any]
    embedding: dict[str, Any]
    knn: dict[str, Any]
    boost: dict[str, Any] = field(default_factory=lambda: asdict(BoostConfig()))
    holdout_fraction: float = 0.2


class NeighbourIndex:
    """A :class:`KnnIndex` plus the weak/strong correctness of every indexed prompt."""

    def __init__(self, index: KnnIndex, weak: npt.NDArray[np.int8], strong: npt.NDArray[np.int8]) -> None:
        if weak.shape != strong.shape or weak.shape[0] != index.gains.shape[0]:
            raise RouterArtifactError("neighbour labels disagree with the kNN index in length")
        if not np.array_equal(strong.astype(np.int64) - weak.astype(np.int64), index.gains.astype(np.int64)):
            raise RouterArtifactError("neighbour labels disagree with the kNN index gains")
        self.index = index
        self.weak = weak
        self.strong = strong
        self._w = weak.astype(np.float64)
        self._s = strong.astype(np.float64)

    @classmethod
    def build(cls, emb: npt.NDArray[np.float32], weak: npt.ArrayLike, strong: npt.ArrayLike) -> NeighbourIndex:
        w = np.asarray(weak, dtype=np.int8)
        s = np.asarray(strong, dtype=np.int8)
        cfg = KnnConfig()
        index = build_index(emb, gain_labels(w, s), cfg)
        return cls(index, w, s)

    def with_fingerprint(self, fingerprint: str) -> NeighbourIndex:
        c = self.index.config
        cfg = KnnConfig(k=c.k, temperature=c.temperature, dims=c.dims, encoder_fingerprint=fingerprint)
        return NeighbourIndex(KnnIndex.from_arrays(cfg, self.index.arrays()), self.weak, self.strong)

    def stats(self, emb: npt.NDArray[np.float32]) -> FloatArray:
        """``(n, len(NEIGHBOUR_STATS))`` neighbour statistics; column 2 is the kNN router's gain."""
        idx = self.index
        sims = idx.project(emb) @ idx._base.T
        k = min(_MAX_K, sims.shape[1])
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(sims, part, axis=1).astype(np.float64)
        order = np.argsort(-top, axis=1, kind="stable")
        nb = np.take_along_axis(part, order, axis=1)
        top = np.take_along_axis(top, order, axis=1)
        w = np.exp((top - top[:, :1]) / idx.config.temperature)
        cw = np.cumsum(w, axis=1)
        g_nb, w_nb, s_nb = idx._gain_f[nb], self._w[nb], self._s[nb]
        cg, cwk, cs = np.cumsum(w * g_nb, axis=1), np.cumsum(w * w_nb, axis=1), np.cumsum(w * s_nb, axis=1)
        csim = np.cumsum(top, axis=1)

        def at(c: FloatArray, kk: int, norm: FloatArray) -> FloatArray:
            j = min(kk, k) - 1
            return np.asarray(c[:, j] / norm[:, j], np.float64)

        ones = np.arange(1, k + 1, dtype=np.float64)[None, :].repeat(len(top), axis=0)
        return np.column_stack(
            [
                at(cg, 10, cw),
                at(cg, 30, cw),
                at(cg, 100, cw),
                at(cg, 300, cw),
                at(cwk, 30, cw),
                at(cwk, 100, cw),
                at(cs, 30, cw),
                at(cs, 100, cw),
                top[:, 0],
                at(csim, 10, ones),
                at(csim, 100, ones),
            ]
        )

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        out = self.index.arrays()
        out.update({"weak": self.weak, "strong": self.strong})
        return out

    @classmethod
    def from_arrays(cls, config: KnnConfig, arrays: Mapping[str, npt.NDArray[Any]]) -> NeighbourIndex:
        return cls(
            KnnIndex.from_arrays(config, arrays),
            np.asarray(arrays["weak"], np.int8),
            np.asarray(arrays["strong"], np.int8),
        )


def _boosted_features(stats: FloatArray, texts: Sequence[str], turns: Sequence[int]) -> FloatArray:
    return np.hstack([stats, feature_matrix(texts, turns), choice_matrix(texts)])


def _boost_score(trees: TreeEnsemble, x: FloatArray) -> FloatArray:
    p = trees.proba(x)
    if p.shape[1] != 3:  # a 2-class fit only happens on degenerate data; map P(higher class)
        return np.asarray(p[:, -1], np.float64)
    return np.asarray(np.clip(p[:, 2] + 0.5 * p[:, 1], 0.0, 1.0), np.float64)


class StackedRouter(PercentileRouter):
    """Mean held-out percentile of the lexical, embedding, kNN and boosted-difficulty routers."""

    name = "stacked"
    COMPONENTS = COMPONENTS

    def __init__(
        self,
        lexical: LexicalRouter,
        embedding: EmbeddingRouter,
        neighbours: NeighbourIndex,
        trees: TreeEnsemble,
        tables: npt.NDArray[np.float64],
        config: StackedConfig,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(lexical, embedding, tables, metadata)
        if trees.n_features != len(BOOSTED_FEATURES):
            raise RouterArtifactError(f"boosted trees expect {trees.n_features} features, not {len(BOOSTED_FEATURES)}")
        self._neighbours = neighbours
        self._trees = trees
        self._config = config

    def _embedding_members(
        self, emb: npt.NDArray[np.float32], texts: Sequence[str], turns: Sequence[int]
    ) -> list[FloatArray]:
        stats = self._neighbours.stats(emb)
        return [
            (1.0 + stats[:, NEIGHBOUR_STATS.index("gain_k100")]) / 2.0,
            _boost_score(self._trees, _boosted_features(stats, texts, turns)),
        ]

    def export(self) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
        """(JSON config, arrays): member arrays are prefixed by member name."""
        lex_cfg, emb_cfg, arrays = self._export_shared()
        arrays.update({f"knn.{k}": v for k, v in self._neighbours.arrays().items()})
        arrays.update(self._trees.arrays("trees."))
        cfg = StackedConfig(
            lex_cfg, emb_cfg, asdict(self._neighbours.index.config), self._config.boost, self._config.holdout_fraction
        )
        return asdict(cfg), arrays

    @classmethod
    def from_parts(
        cls,
        config: Mapping[str, Any],
        arrays: Mapping[str, npt.NDArray[Any]],
        metadata: Mapping[str, Any],
        encoder: MiniLMEncoder | None = None,
    ) -> StackedRouter:
        """Rebuild from :meth:`export` output (one shared encoder)."""
        try:
            cfg = StackedConfig(**config)
            BoostConfig(**cfg.boost)
            knn_cfg = KnnConfig(**cfg.knn)
            enc = trained_encoder(knn_cfg.encoder_fingerprint, encoder)
            lexical, embedding, tables = cls._load_shared(cfg.lexical, cfg.embedding, arrays, enc)
            neighbours = NeighbourIndex.from_arrays(knn_cfg, unprefix(arrays, "knn"))
            trees = TreeEnsemble.from_arrays(arrays, len(BOOSTED_FEATURES), prefix="trees.")
        except (KeyError, TypeError, ValueError) as exc:
            raise RouterArtifactError(f"stacked artifact is malformed: {exc}") from exc
        return cls(lexical, embedding, neighbours, trees, tables, cfg, metadata)


def _out_of_fold_stats(emb: npt.NDArray[np.float32], data: LabeledPrompts, folds: int, seed: int) -> FloatArray:
    """Neighbour statistics of every training row from an index without its group (see module doc)."""
    fold = group_folds(data.prompts, folds, seed)
    out = np.zeros((len(data), len(NEIGHBOUR_STATS)), dtype=np.float64)
    for j in range(folds):
        held = fold == j
        if not held.any() or held.all():
            continue
        nb = NeighbourIndex.build(emb[~held], data.weak[~held], data.strong[~held])
        out[held] = nb.stats(emb[held])
    return out


def train_boosted(
    data: LabeledPrompts, emb: npt.NDArray[np.float32], texts: Sequence[str], seed: int, config: BoostConfig
) -> TreeEnsemble:
    """Fit the boosted component on out-of-fold neighbour statistics + shape + choice features."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    stats = _out_of_fold_stats(emb, data, config.inner_folds, seed)
    x = _boosted_features(stats, texts, [len(c) for c in data.conversations()])
    y = gain_labels(data.weak, data.strong)
    if len(set(y.tolist())) < 2:
        return constant_trees(len(BOOSTED_FEATURES))
    model = HistGradientBoostingClassifier(
        learning_rate=config.learning_rate,
        max_iter=config.max_iter,
        max_leaf_nodes=config.max_leaf_nodes,
        min_samples_leaf=config.min_samples_leaf,
        early_stopping=False,
        random_state=seed,
    )
    model.fit(x, y)
    return flatten_hgb(model)


def train_stacked(
    data: LabeledPrompts,
    seed: int = 0,
    progress: bool = False,
    encoder: MiniLMEncoder | None = None,
    components: Mapping[str, Router] | None = None,
    holdout_fraction: float = 0.2,
    boost: BoostConfig | None = None,
) -> StackedRouter:
    """Fit the stacked router. ``components`` may pass already-trained full-data ``lexical`` and
    ``embedding`` routers (the evaluation harness does, to avoid fitting them twice)."""
    from tqdm.auto import tqdm

    enc = encoder or MiniLMEncoder.for_training()
    bcfg = boost or BoostConfig()
    done = dict(components or {})
    texts, emb = embed_dataset(data, enc, progress)
    fit_idx, held_idx = holdout_split(data.prompts, holdout_fraction, seed)
    fit, held = data.subset(fit_idx), data.subset(held_idx)
    bar = tqdm(total=6, desc="stacked", disable=not progress)
    inner = StackedRouter(
        train_lexical(fit, seed),
        train_embedding(fit, seed, encoder=enc),
        NeighbourIndex.build(emb[fit_idx], fit.weak, fit.strong).with_fingerprint(enc.fingerprint),
        train_boosted(fit, emb[fit_idx], [texts[i] for i in fit_idx], seed, bcfg),
        np.tile(np.linspace(0.0, 1.0, QUANTILES), (len(COMPONENTS), 1)),
        StackedConfig({}, {}, {}),
    )
    bar.update(3)
    held_scores = inner.component_scores(held.conversations())
    tables = np.stack([percentile_table(held_scores[:, i]) for i in range(len(COMPONENTS))])
    lexical = done.get("lexical") or train_lexical(data, seed)
    bar.update()
    embedding = done.get("embedding") or train_embedding(data, seed, encoder=enc)
    bar.update()
    trees = train_boosted(data, emb, texts, seed, bcfg)
    bar.update()
    bar.close()
    if not (isinstance(lexical, LexicalRouter) and isinstance(embedding, EmbeddingRouter)):
        raise TypeError("stacked components have the wrong router types")
    neighbours = NeighbourIndex.build(emb, data.weak, data.strong).with_fingerprint(enc.fingerprint)
    knn_cfg = asdict(neighbours.index.config)
    cfg = StackedConfig(asdict(LexicalConfig()), asdict(EmbeddingConfig()), knn_cfg, asdict(bcfg), holdout_fraction)
    return StackedRouter(lexical, embedding, neighbours, trees, tables, cfg)
