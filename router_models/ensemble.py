"""Ensemble router: lexical + embedding head + kNN, combined by held-out percentiles.

The members are combined as :mod:`router_models.percentile` describes. The quantile tables come
from an inner 80/20 split of the training set (members fitted on 80%, quantiles of their scores
on the other 20%); the members are then refitted on everything. The MiniLM embedding is computed
once per request and shared by the embedding head and the kNN index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from router_models.base import Router
from router_models.data import LabeledPrompts
from router_models.embedding import EmbeddingConfig, EmbeddingRouter, train_embedding, trained_encoder
from router_models.encoder import MiniLMEncoder
from router_models.errors import RouterArtifactError
from router_models.knn import KnnConfig, KnnIndex, KnnRouter, train_knn
from router_models.lexical import LexicalConfig, LexicalRouter, train_lexical
from router_models.percentile import PercentileRouter, percentile_table, unprefix
from router_models.splits import holdout_split

FloatArray = npt.NDArray[np.float64]
COMPONENTS = ("lexical", "embedding", "knn")


@dataclass(frozen=True)
class EnsembleConfig:
    """Component configs plus the inner-split fraction used for the percentile tables."""

    lexical: dict[str, Any]
    embedding: dict[str, Any]
    knn: dict[str, Any]
    holdout_fraction: float = 0.2


class EnsembleRouter(PercentileRouter):
    """Mean held-out percentile of the lexical, embedding and kNN routers."""

    name = "ensemble"
    COMPONENTS = COMPONENTS

    def __init__(
        self,
        lexical: LexicalRouter,
        embedding: EmbeddingRouter,
        knn: KnnIndex,
        tables: npt.NDArray[np.float64],
        config: EnsembleConfig,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(lexical, embedding, tables, metadata)
        self._knn = knn
        self._config = config

    def _embedding_members(
        self, emb: npt.NDArray[np.float32], texts: Sequence[str], turns: Sequence[int]
    ) -> list[FloatArray]:
        return [self._knn.score_embeddings(emb)]

    def export(self) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
        """(JSON config, arrays) to persist: member arrays are prefixed by member name."""
        lex_cfg, emb_cfg, arrays = self._export_shared()
        arrays.update({f"knn.{k}": v for k, v in self._knn.arrays().items()})
        cfg = EnsembleConfig(lex_cfg, emb_cfg, asdict(self._knn.config), self._config.holdout_fraction)
        return asdict(cfg), arrays

    @classmethod
    def from_parts(
        cls,
        config: Mapping[str, Any],
        arrays: Mapping[str, npt.NDArray[Any]],
        metadata: Mapping[str, Any],
        encoder: MiniLMEncoder | None = None,
    ) -> EnsembleRouter:
        """Rebuild from :meth:`export` output (one shared encoder for both embedding users)."""
        try:
            cfg = EnsembleConfig(**config)
            knn_cfg = KnnConfig(**cfg.knn)
            enc = trained_encoder(knn_cfg.encoder_fingerprint, encoder)
            lexical, embedding, tables = cls._load_shared(cfg.lexical, cfg.embedding, arrays, enc)
            knn = KnnIndex.from_arrays(knn_cfg, unprefix(arrays, "knn"))
        except (KeyError, TypeError, ValueError) as exc:
            raise RouterArtifactError(f"ensemble artifact is malformed: {exc}") from exc
        return cls(lexical, embedding, knn, tables, cfg, metadata)


def train_ensemble(
    data: LabeledPrompts,
    seed: int = 0,
    progress: bool = False,
    encoder: MiniLMEncoder | None = None,
    components: Mapping[str, Router] | None = None,
    holdout_fraction: float = 0.2,
) -> EnsembleRouter:
    """Fit the ensemble. ``components`` may pass already-trained full-data component routers
    (the evaluation harness does, to avoid fitting the same models twice)."""
    from tqdm.auto import tqdm

    enc = encoder or MiniLMEncoder.for_training()
    done = dict(components or {})
    fit_idx, held_idx = holdout_split(data.prompts, holdout_fraction, seed)
    fit, held = data.subset(fit_idx), data.subset(held_idx)
    held_convs = held.conversations()
    bar = tqdm(total=2 * len(COMPONENTS), desc="ensemble", disable=not progress)
    inner_lex = train_lexical(fit, seed)
    bar.update()
    inner_emb = train_embedding(fit, seed, encoder=enc)
    bar.update()
    inner_knn = train_knn(fit, seed, encoder=enc)
    bar.update()
    held_scores = [r.score_many(held_convs) for r in (inner_lex, inner_emb, inner_knn)]
    tables = np.stack([percentile_table(s) for s in held_scores])
    lexical = done.get("lexical") or train_lexical(data, seed)
    bar.update()
    embedding = done.get("embedding") or train_embedding(data, seed, encoder=enc)
    bar.update()
    knn = done.get("knn") or train_knn(data, seed, encoder=enc)
    bar.update()
    bar.close()
    if not (
        isinstance(lexical, LexicalRouter) and isinstance(embedding, EmbeddingRouter) and isinstance(knn, KnnRouter)
    ):
        raise TypeError("ensemble components have the wrong router types")
    cfg = EnsembleConfig(asdict(LexicalConfig()), asdict(EmbeddingConfig()), asdict(KnnConfig()), holdout_fraction)
    return EnsembleRouter(lexical, embedding, knn.index, tables, cfg)
