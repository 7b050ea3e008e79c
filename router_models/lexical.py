"""Fast lexical router: hashed word n-gram TF-IDF (+ prompt-shape features) → gain head.

Hashing (instead of a fitted vocabulary) keeps the artifact to a few arrays and makes
vectorising a pure function, so concurrent :meth:`LexicalRouter.score` calls share no state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from router_models.base import Router
from router_models.conversation import ChatTurn, render_conversation
from router_models.data import LabeledPrompts
from router_models.errors import RouterArtifactError
from router_models.features import FEATURE_NAMES, feature_matrix, prompt_features
from router_models.heads import GainHead, fit_gain_head, gain_labels, gain_probabilities_to_score

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class LexicalConfig:
    """Hyper-parameters (stored in the artifact so scoring rebuilds the same vectoriser)."""

    n_features: int = 1 << 20
    ngram_max: int = 2
    min_df: int = 2
    c: float = 1.0
    shape_features: bool = True
    shape_weight: float = 0.3


class _Vectoriser:
    """Hashed TF-IDF restricted to the training vocabulary, plus scaled shape features."""

    def __init__(
        self,
        config: LexicalConfig,
        columns: npt.NDArray[np.int64],
        idf: npt.NDArray[np.float32],
        shape_mean: npt.NDArray[np.float32],
        shape_std: npt.NDArray[np.float32],
    ) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        self.config = config
        self.columns = columns
        self.idf = idf
        self.shape_mean = shape_mean
        self.shape_std = shape_std
        self._hasher = HashingVectorizer(
            n_features=config.n_features,
            ngram_range=(1, config.ngram_max),
            alternate_sign=False,
            norm=None,
            lowercase=True,
            dtype=np.float32,
        )
        self._analyzer = self._hasher.build_analyzer()

    @property
    def dim(self) -> int:
        extra = len(FEATURE_NAMES) if self.config.shape_features else 0
        return int(self.columns.size) + extra

    def raw_counts(self, texts: Sequence[str]) -> sp.csr_matrix:
        return sp.csr_matrix(self._hasher.transform(texts))

    def hashed_counts(self, text: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """(sorted hashed column ids, counts) of one text, bit-identical to ``raw_counts``.

        Re-implements HashingVectorizer's index rule (murmurhash3 seed 0, ``abs(h) % n`` with
        the INT_MIN special case) without its per-call validation overhead.
        """
        from sklearn.utils import murmurhash3_32

        feats = self._analyzer(text)
        if not feats:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        n = self.config.n_features
        h = np.fromiter((murmurhash3_32(f, 0) for f in feats), dtype=np.int64, count=len(feats))
        idx = np.where(h == -(2**31), (2**31 - 1 - (n - 1)) % n, np.abs(h) % n)
        cols, counts = np.unique(idx, return_counts=True)
        return cols.astype(np.int64), counts.astype(np.float64)

    def transform(self, texts: Sequence[str], turns: Sequence[int]) -> sp.csr_matrix:
        counts = self.raw_counts(texts).tocoo()
        pos = np.searchsorted(self.columns, counts.col)
        pos = np.minimum(pos, max(self.columns.size - 1, 0))
        keep = self.columns[pos] == counts.col if self.columns.size else np.zeros(0, bool)
        rows, cols = counts.row[keep], pos[keep]
        # Sublinear tf then idf, then L2 over the known vocabulary (as TfidfVectorizer does).
        vals = (1.0 + np.log(counts.data[keep])) * self.idf[cols]
        x = sp.csr_matrix((vals, (rows, cols)), shape=(len(texts), self.columns.size), dtype=np.float64)
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        x = sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ x)
        if not self.config.shape_features:
            return x
        shape = (feature_matrix(texts, turns) - self.shape_mean) / self.shape_std
        return sp.csr_matrix(sp.hstack([x, sp.csr_matrix(shape * self.config.shape_weight)]))


class LexicalRouter(Router):
    """Hashed TF-IDF + shape features → multinomial logistic regression on routing gain."""

    name = "lexical"

    def __init__(
        self,
        vectoriser: _Vectoriser,
        head: GainHead,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(metadata)
        if head.dim != vectoriser.dim:
            raise RouterArtifactError(f"lexical head expects {head.dim} features, vectoriser gives {vectoriser.dim}")
        self._vec = vectoriser
        self._head = head
        # Row-gatherable copy of the weights: (features, 3), contiguous.
        self._coef_t = np.ascontiguousarray(head.coef.T, dtype=np.float64)

    def score(self, conversation: Sequence[ChatTurn]) -> float:
        """Score one conversation (all turns rendered together)."""
        return self._score_text(render_conversation(conversation), len(conversation))

    def score_many(self, conversations: Sequence[Sequence[ChatTurn]]) -> FloatArray:
        """Score several conversations (per-row fast path; identical to :meth:`score`)."""
        return np.array([self.score(c) for c in conversations], dtype=np.float64)

    def _score_text(self, text: str, turns: int) -> float:
        # Per-request path with plain numpy on the request's few hundred features: going through
        # scipy.sparse and sklearn's batch transform costs ~5 ms of overhead per call, this ~0.3.
        # tests/unit/router_models check it against the batch path used for training.
        vec = self._vec
        logits = self._head.intercept.astype(np.float64)
        cols, counts = vec.hashed_counts(text)
        pos = np.searchsorted(vec.columns, cols)
        pos = np.minimum(pos, max(vec.columns.size - 1, 0))
        keep = vec.columns[pos] == cols if vec.columns.size else np.zeros(0, dtype=bool)
        pos, counts = pos[keep], counts[keep]
        if pos.size:
            vals = (1.0 + np.log(counts)) * vec.idf[pos]
            vals = vals / max(float(np.sqrt(vals @ vals)), 1e-12)
            logits = logits + vals @ self._coef_t[pos]
        if vec.config.shape_features:
            shape = (np.asarray(prompt_features(text, turns)) - vec.shape_mean) / vec.shape_std
            logits = logits + (vec.config.shape_weight * shape) @ self._coef_t[vec.columns.size :]
        logits -= logits.max()
        p = np.exp(logits)
        p /= p.sum()
        return float(gain_probabilities_to_score(p[None, :])[0])

    # -- artifact parts ------------------------------------------------------------------------
    def export(self) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
        """(JSON config, arrays) to persist."""
        arrays: dict[str, npt.NDArray[Any]] = {
            "columns": self._vec.columns,
            "idf": self._vec.idf,
            "shape_mean": self._vec.shape_mean,
            "shape_std": self._vec.shape_std,
            "coef": self._head.coef,
            "intercept": self._head.intercept,
        }
        return asdict(self._vec.config), arrays

    @classmethod
    def from_parts(
        cls, config: Mapping[str, Any], arrays: Mapping[str, npt.NDArray[Any]], metadata: Mapping[str, Any]
    ) -> LexicalRouter:
        """Rebuild from :meth:`export` output (raises ``RouterArtifactError`` on mismatch)."""
        try:
            cfg = LexicalConfig(**config)
            vec = _Vectoriser(
                cfg,
                np.asarray(arrays["columns"], dtype=np.int64),
                np.asarray(arrays["idf"], dtype=np.float32),
                np.asarray(arrays["shape_mean"], dtype=np.float32),
                np.asarray(arrays["shape_std"], dtype=np.float32),
            )
            head = GainHead(np.asarray(arrays["coef"], np.float32), np.asarray(arrays["intercept"], np.float32))
        except (KeyError, TypeError, ValueError) as exc:
            raise RouterArtifactError(f"lexical artifact is malformed: {exc}") from exc
        return cls(vec, head, metadata)


def train_lexical(
    data: LabeledPrompts, seed: int = 0, config: LexicalConfig | None = None, progress: bool = False
) -> LexicalRouter:
    """Fit the lexical router on ``data`` (deterministic for a given seed)."""
    from tqdm.auto import tqdm

    cfg = config or LexicalConfig()
    steps = tqdm(total=3, desc="lexical", disable=not progress)
    convs = data.conversations()
    texts = [render_conversation(c) for c in convs]
    empty_vec = _Vectoriser(
        cfg, np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32), np.ones(0, np.float32)
    )
    counts = empty_vec.raw_counts(texts)
    df = np.bincount(counts.indices, minlength=cfg.n_features)
    columns = np.flatnonzero(df >= cfg.min_df).astype(np.int64)
    n = len(texts)
    idf = (np.log((1.0 + n) / (1.0 + df[columns])) + 1.0).astype(np.float32)
    turns = [len(c) for c in convs]
    shape = feature_matrix(texts, turns)
    mean = shape.mean(axis=0).astype(np.float32)
    std = np.maximum(shape.std(axis=0), 1e-6).astype(np.float32)
    steps.update()
    vec = _Vectoriser(cfg, columns, idf, mean, std)
    x = vec.transform(texts, turns)
    steps.update()
    head = fit_gain_head(x, gain_labels(data.weak, data.strong), cfg.c, seed)
    steps.update()
    steps.close()
    return LexicalRouter(vec, head)
