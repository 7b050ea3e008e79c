"""Ensemble router: lexical + embedding head + kNN, combined by held-out percentiles.

Each component's score is mapped through its own held-out score distribution (a 101-point
quantile table) to a percentile; the ensemble score is the mean percentile squashed into (0, 1). This is
rank averaging made computable per request, and it avoids weighting components by their
arbitrary score scales. The quantile tables come from an inner 80/20 split of the training set
(components fitted on 80%, quantiles of their scores on the other 20%); the components are then
refitted on everything. The MiniLM embedding is computed once per request and shared by the
embedding head and the kNN index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from router_models.base import Router
from router_models.conversation import ChatTurn, render_conversation
from router_models.data import LabeledPrompts
from router_models.embedding import EmbeddingConfig, EmbeddingRouter, check_encoder, train_embedding
from router_models.encoder import MiniLMEncoder
from router_models.errors import RouterArtifactError
from router_models.knn import KnnConfig, KnnIndex, KnnRouter, train_knn
from router_models.lexical import LexicalConfig, LexicalRouter, train_lexical
from router_models.splits import holdout_split

FloatArray = npt.NDArray[np.float64]
COMPONENTS = ("lexical", "embedding", "knn")
QUANTILES = 101


@dataclass(frozen=True)
class EnsembleConfig:
    """Component configs plus the inner-split fraction used for the percentile tables."""

    lexical: dict[str, Any]
    embedding: dict[str, Any]
    knn: dict[str, Any]
    holdout_fraction: float = 0.2


#: A percentile table no wider than this comes from constant scores (it holds only the 1e-12
#: steps :func:`percentile_table` adds to keep it strictly increasing).
_FLAT_SPAN = 1e-9


def percentile_table(scores: FloatArray) -> npt.NDArray[np.float64]:
    """101 strictly increasing quantiles of ``scores`` (strictness keeps ``np.interp`` defined)."""
    q = np.quantile(np.asarray(scores, np.float64), np.linspace(0.0, 1.0, QUANTILES))
    return q + np.arange(QUANTILES) * 1e-12


def to_percentile(scores: FloatArray, table: npt.NDArray[np.float64]) -> FloatArray:
    """Map raw scores to percentiles of the held-out distribution.

    Inside the held-out range this is the empirical CDF (piecewise linear). Outside it the map
    continues linearly with the slope of the outer decile instead of clamping at 0 or 1:
    out-of-distribution traffic (chat prompts, or GSM8K for an MMLU-trained model) often falls
    entirely beyond one end, and clamping would tie all of it and silence that component.
    """
    s = np.asarray(scores, np.float64)
    if float(table[-1] - table[0]) <= _FLAT_SPAN:
        # The component scored every held-out prompt alike (boosted trees fitted on too few rows
        # to split are constant): it ranks nothing, so it stays neutral. Extrapolating from a
        # zero-width table would send any other value to +-1e8 and swamp the other components.
        return np.full(s.shape, 0.5)
    p = np.interp(s, table, np.linspace(0.0, 1.0, QUANTILES))
    decile = (QUANTILES - 1) // 10
    lo_slope = 0.1 / max(float(table[decile] - table[0]), 1e-9)
    hi_slope = 0.1 / max(float(table[-1] - table[-1 - decile]), 1e-9)
    p = np.where(s < table[0], (s - table[0]) * lo_slope, p)
    p = np.where(s > table[-1], 1.0 + (s - table[-1]) * hi_slope, p)
    return np.asarray(p, np.float64)


def squash(x: FloatArray) -> FloatArray:
    """Strictly increasing map of the real line onto (0, 1): linear (0.05 + 0.9x) on [0, 1], with
    exponential tails of matching slope, so extrapolated percentiles stay ordered and in range."""
    x = np.asarray(x, np.float64)
    mid = 0.05 + 0.9 * x
    high = 1.0 - 0.05 * np.exp(-18.0 * np.clip(x - 1.0, 0.0, 50.0))
    low = 0.05 * np.exp(18.0 * np.clip(x, -50.0, 0.0))
    return np.asarray(np.where(x > 1.0, high, np.where(x < 0.0, low, mid)), np.float64)


def mean_percentile(raw: FloatArray, tables: npt.NDArray[np.float64]) -> FloatArray:
    """Combine component scores (one column each) as the squashed mean of their held-out percentiles."""
    pct = [to_percentile(raw[:, i], tables[i]) for i in range(raw.shape[1])]
    return squash(np.mean(pct, axis=0))


def unprefix(arrays: Mapping[str, npt.NDArray[Any]], prefix: str) -> dict[str, npt.NDArray[Any]]:
    """The arrays stored under ``"<prefix>.<name>"``, keyed by ``name``."""
    return {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith(prefix + ".")}


class EnsembleRouter(Router):
    """Mean held-out percentile of the lexical, embedding and kNN routers.

    The score is monotone in the estimated need for the large model but is a percentile-style
    value (mapped into (0, 1) by :func:`squash`), not a calibrated probability; thresholds come
    from the calibration table like for every router.
    """

    name = "ensemble"

    def __init__(
        self,
        lexical: LexicalRouter,
        embedding: EmbeddingRouter,
        knn: KnnIndex,
        tables: npt.NDArray[np.float64],
        config: EnsembleConfig,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(metadata)
        if tables.shape != (len(COMPONENTS), QUANTILES):
            raise RouterArtifactError(f"ensemble percentile tables have shape {tables.shape}")
        self._lexical = lexical
        self._embedding = embedding
        self._knn = knn
        self._tables = tables
        self._config = config

    def component_scores(self, conversations: Sequence[Sequence[ChatTurn]]) -> FloatArray:
        """``(n, 3)`` raw component scores (lexical, embedding, kNN)."""
        texts = [render_conversation(c) for c in conversations]
        turns = [len(c) for c in conversations]
        emb = self._embedding.encoder.encode(texts)
        return np.column_stack(
            [
                self._lexical.score_many(conversations),
                self._embedding.score_embeddings(emb, texts, turns),
                self._knn.score_embeddings(emb),
            ]
        )

    def score(self, conversation: Sequence[ChatTurn]) -> float:
        """Score one conversation (all turns rendered together)."""
        return float(self.score_many([conversation])[0])

    def score_many(self, conversations: Sequence[Sequence[ChatTurn]]) -> FloatArray:
        """Batched scoring."""
        return mean_percentile(self.component_scores(conversations), self._tables)

    def export(self) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
        """(JSON config, arrays) to persist: component arrays are prefixed by component name."""
        lex_cfg, lex_arrays = self._lexical.export()
        emb_cfg, emb_arrays = self._embedding.export()
        arrays: dict[str, npt.NDArray[Any]] = {"tables": self._tables}
        arrays.update({f"lexical.{k}": v for k, v in lex_arrays.items()})
        arrays.update({f"embedding.{k}": v for k, v in emb_arrays.items()})
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
            enc = encoder or MiniLMEncoder.matching(cfg.knn.get("encoder_fingerprint", ""))

            lexical = LexicalRouter.from_parts(cfg.lexical, unprefix(arrays, "lexical"), {})
            embedding = EmbeddingRouter.from_parts(cfg.embedding, unprefix(arrays, "embedding"), {}, encoder=enc)
            knn_cfg = KnnConfig(**cfg.knn)
            check_encoder(knn_cfg.encoder_fingerprint, enc)
            knn = KnnIndex.from_arrays(knn_cfg, unprefix(arrays, "knn"))
            tables = np.asarray(arrays["tables"], np.float64)
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
