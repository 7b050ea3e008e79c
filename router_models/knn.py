"""Nearest-neighbour router over MiniLM embeddings.

A request's score is the similarity-weighted mean routing gain of its K most similar training
prompts, mapped to [0, 1] as ``(1 + mean_gain) / 2`` (the same scale as the gain heads).
To keep the artifact small, training embeddings are PCA-projected to 128 dimensions and stored as
int8 with one scale per dimension (~2 MB for 15k prompts); CV showed no loss from this.
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
from router_models.embedding import embed_dataset, trained_encoder
from router_models.encoder import EMBED_DIM, MiniLMEncoder
from router_models.errors import RouterArtifactError
from router_models.heads import gain_labels

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class KnnConfig:
    """Hyper-parameters (chosen by 5-fold CV on MMLU and GSM8K)."""

    k: int = 100
    temperature: float = 0.3
    dims: int = 128
    encoder_fingerprint: str = ""


class KnnIndex:
    """Projected, quantised training embeddings with their gains (read-only after build)."""

    def __init__(
        self,
        config: KnnConfig,
        mean: npt.NDArray[np.float32],
        projection: npt.NDArray[np.float32],
        codes: npt.NDArray[np.int8],
        scale: npt.NDArray[np.float32],
        gains: npt.NDArray[np.int8],
    ) -> None:
        if projection.shape != (EMBED_DIM, config.dims) or codes.shape[1:] != (config.dims,):
            raise RouterArtifactError(f"kNN arrays have shapes {projection.shape}/{codes.shape}")
        if codes.shape[0] != gains.shape[0] or codes.shape[0] == 0:
            raise RouterArtifactError("kNN codes and gains disagree in length")
        self.config = config
        self.mean = mean
        self.projection = projection
        self.codes = codes
        self.scale = scale
        self.gains = gains
        base = codes.astype(np.float32) * scale
        self._base = base / np.maximum(np.linalg.norm(base, axis=1, keepdims=True), 1e-12)
        self._gain_f = gains.astype(np.float64)

    def project(self, emb: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        z = (emb - self.mean) @ self.projection
        return np.asarray(z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12), np.float32)

    def score_embeddings(self, emb: npt.NDArray[np.float32], exclude_self: bool = False) -> FloatArray:
        sims = self.project(emb) @ self._base.T
        if exclude_self:
            # Used only for in-sample diagnostics: a training prompt must not vote for itself.
            np.fill_diagonal(sims, -np.inf)
        k = min(self.config.k, sims.shape[1])
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(sims, idx, axis=1).astype(np.float64)
        w = np.exp((top - top.max(axis=1, keepdims=True)) / self.config.temperature)
        mean_gain = (w * self._gain_f[idx]).sum(axis=1) / w.sum(axis=1)
        return np.asarray((1.0 + mean_gain) / 2.0, dtype=np.float64)

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {
            "mean": self.mean,
            "projection": self.projection,
            "codes": self.codes,
            "scale": self.scale,
            "gains": self.gains,
        }

    @classmethod
    def from_arrays(cls, config: KnnConfig, arrays: Mapping[str, npt.NDArray[Any]]) -> KnnIndex:
        return cls(
            config,
            np.asarray(arrays["mean"], np.float32),
            np.asarray(arrays["projection"], np.float32),
            np.asarray(arrays["codes"], np.int8),
            np.asarray(arrays["scale"], np.float32),
            np.asarray(arrays["gains"], np.int8),
        )


def build_index(emb: npt.NDArray[np.float32], gains: npt.NDArray[np.int64], config: KnnConfig) -> KnnIndex:
    """PCA-project and int8-quantise training embeddings (deterministic: SVD, no sampling)."""
    mean = emb.mean(axis=0).astype(np.float32)
    _, _, vt = np.linalg.svd((emb - mean).astype(np.float64), full_matrices=False)
    dims = min(config.dims, vt.shape[0])
    projection = np.zeros((EMBED_DIM, config.dims), dtype=np.float32)
    projection[:, :dims] = vt[:dims].T
    z = (emb - mean) @ projection
    scale = np.maximum(np.abs(z).max(axis=0), 1e-6).astype(np.float32) / 127.0
    codes = np.clip(np.round(z / scale), -127, 127).astype(np.int8)
    return KnnIndex(config, mean, projection, codes, scale, gains.astype(np.int8))


class KnnRouter(Router):
    """Similarity-weighted kNN over MiniLM embeddings of the training prompts."""

    name = "knn"

    def __init__(self, encoder: MiniLMEncoder, index: KnnIndex, metadata: Mapping[str, Any] | None = None) -> None:
        super().__init__(metadata)
        self._encoder = encoder
        self._index = index

    @property
    def encoder(self) -> MiniLMEncoder:
        """The (lazily loaded) sentence encoder."""
        return self._encoder

    @property
    def index(self) -> KnnIndex:
        """The neighbour index (shared with the ensemble router)."""
        return self._index

    def score(self, conversation: Sequence[ChatTurn]) -> float:
        """Score one conversation (all turns rendered together)."""
        return float(self.score_many([conversation])[0])

    def score_many(self, conversations: Sequence[Sequence[ChatTurn]]) -> FloatArray:
        """Batched scoring."""
        emb = self._encoder.encode([render_conversation(c) for c in conversations])
        return self._index.score_embeddings(emb)

    def export(self) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
        """(JSON config, arrays) to persist."""
        return asdict(self._index.config), self._index.arrays()

    @classmethod
    def from_parts(
        cls,
        config: Mapping[str, Any],
        arrays: Mapping[str, npt.NDArray[Any]],
        metadata: Mapping[str, Any],
        encoder: MiniLMEncoder | None = None,
    ) -> KnnRouter:
        """Rebuild from :meth:`export` output; verifies the encoder weights fingerprint."""
        try:
            cfg = KnnConfig(**config)
            enc = trained_encoder(cfg.encoder_fingerprint, encoder)
            index = KnnIndex.from_arrays(cfg, arrays)
        except (KeyError, TypeError, ValueError) as exc:
            raise RouterArtifactError(f"kNN artifact is malformed: {exc}") from exc
        return cls(enc, index, metadata)


def train_knn(
    data: LabeledPrompts,
    seed: int = 0,
    config: KnnConfig | None = None,
    progress: bool = False,
    encoder: MiniLMEncoder | None = None,
) -> KnnRouter:
    """Build the kNN router (``seed`` is unused: SVD and top-K are deterministic)."""
    del seed
    enc = encoder or MiniLMEncoder.for_training()
    base = config or KnnConfig()
    cfg = KnnConfig(k=base.k, temperature=base.temperature, dims=base.dims, encoder_fingerprint=enc.fingerprint)
    _, emb = embed_dataset(data, enc, progress)
    return KnnRouter(enc, build_index(emb, gain_labels(data.weak, data.strong), cfg))
