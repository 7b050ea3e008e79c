"""Combining routers by held-out percentiles: the maths, and the base of the combined routers.

Each component's score is mapped through its own held-out score distribution (a 101-point
quantile table) to a percentile; the combined score is the mean percentile squashed into (0, 1).
This is rank averaging made computable per request, and it avoids weighting components by their
arbitrary score scales. :class:`PercentileRouter` holds what the combined routers
(:mod:`router_models.ensemble`, :mod:`router_models.stacked`) share: a lexical and an embedding
member, one MiniLM embedding per request for every member that needs one, and the tables.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from router_models.base import Router
from router_models.conversation import ChatTurn, render_conversation
from router_models.embedding import EmbeddingRouter
from router_models.encoder import MiniLMEncoder
from router_models.errors import RouterArtifactError
from router_models.lexical import LexicalRouter

__all__ = [
    "QUANTILES",
    "PercentileRouter",
    "mean_percentile",
    "percentile_table",
    "squash",
    "to_percentile",
    "unprefix",
]

FloatArray = npt.NDArray[np.float64]
QUANTILES = 101

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


class PercentileRouter(Router):
    """Mean held-out percentile of a lexical, an embedding and further embedding-based members.

    The score is monotone in the estimated need for the large model but is a percentile-style
    value (mapped into (0, 1) by :func:`squash`), not a calibrated probability; thresholds come
    from the calibration table like for every router. Subclasses name their members in
    ``COMPONENTS`` (``lexical`` and ``embedding`` first) and score the others in
    :meth:`_embedding_members`, from the embedding computed once per request.
    """

    COMPONENTS: tuple[str, ...] = ("lexical", "embedding")

    def __init__(
        self,
        lexical: LexicalRouter,
        embedding: EmbeddingRouter,
        tables: npt.NDArray[np.float64],
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(metadata)
        if tables.shape != (len(self.COMPONENTS), QUANTILES):
            raise RouterArtifactError(f"{self.name} percentile tables have shape {tables.shape}")
        self._lexical = lexical
        self._embedding = embedding
        self._tables = tables

    @abstractmethod
    def _embedding_members(
        self, emb: npt.NDArray[np.float32], texts: Sequence[str], turns: Sequence[int]
    ) -> list[FloatArray]:
        """Raw scores of the members after ``lexical`` and ``embedding``, one array each."""

    def component_scores(self, conversations: Sequence[Sequence[ChatTurn]]) -> FloatArray:
        """``(n, len(COMPONENTS))`` raw member scores, in ``COMPONENTS`` order."""
        texts = [render_conversation(c) for c in conversations]
        turns = [len(c) for c in conversations]
        emb = self._embedding.encoder.encode(texts)
        return np.column_stack(
            [
                self._lexical.score_many(conversations),
                self._embedding.score_embeddings(emb, texts, turns),
                *self._embedding_members(emb, texts, turns),
            ]
        )

    def score(self, conversation: Sequence[ChatTurn]) -> float:
        """Score one conversation (all turns rendered together)."""
        return float(self.score_many([conversation])[0])

    def score_many(self, conversations: Sequence[Sequence[ChatTurn]]) -> FloatArray:
        """Batched scoring."""
        return mean_percentile(self.component_scores(conversations), self._tables)

    def _export_shared(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, npt.NDArray[Any]]]:
        """(lexical config, embedding config, arrays): the tables and both members' arrays,
        prefixed by member name; subclasses add their own members'."""
        lex_cfg, lex_arrays = self._lexical.export()
        emb_cfg, emb_arrays = self._embedding.export()
        arrays: dict[str, npt.NDArray[Any]] = {"tables": self._tables}
        arrays.update({f"lexical.{k}": v for k, v in lex_arrays.items()})
        arrays.update({f"embedding.{k}": v for k, v in emb_arrays.items()})
        return lex_cfg, emb_cfg, arrays

    @staticmethod
    def _load_shared(
        lexical: Mapping[str, Any],
        embedding: Mapping[str, Any],
        arrays: Mapping[str, npt.NDArray[Any]],
        encoder: MiniLMEncoder,
    ) -> tuple[LexicalRouter, EmbeddingRouter, npt.NDArray[np.float64]]:
        """The lexical and embedding members and the tables, from :meth:`_export_shared` output."""
        return (
            LexicalRouter.from_parts(lexical, unprefix(arrays, "lexical"), {}),
            EmbeddingRouter.from_parts(embedding, unprefix(arrays, "embedding"), {}, encoder=encoder),
            np.asarray(arrays["tables"], np.float64),
        )
