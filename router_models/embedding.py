"""Sentence-embedding router: all-MiniLM-L6-v2 embedding (+ prompt-shape features) → gain head.

The encoder is loaded lazily on first score, so constructing/loading the router is cheap and
importing this module pulls in neither torch nor onnxruntime.
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
from router_models.encoder import EMBED_DIM, MiniLMEncoder
from router_models.errors import RouterArtifactError
from router_models.features import FEATURE_NAMES, feature_matrix
from router_models.heads import GainHead, fit_gain_head, gain_labels

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class EmbeddingConfig:
    """Hyper-parameters of the embedding router."""

    c: float = 0.3
    shape_weight: float = 0.3
    encoder_fingerprint: str = ""


class EmbeddedFeatures:
    """Turns conversations into ``[embedding, scaled shape features]`` rows."""

    def __init__(
        self,
        encoder: MiniLMEncoder,
        shape_mean: npt.NDArray[np.float32],
        shape_std: npt.NDArray[np.float32],
        shape_weight: float,
    ) -> None:
        self.encoder = encoder
        self.shape_mean = shape_mean
        self.shape_std = shape_std
        self.shape_weight = shape_weight

    @property
    def dim(self) -> int:
        return EMBED_DIM + len(FEATURE_NAMES)

    def from_embeddings(self, emb: npt.NDArray[np.float32], texts: Sequence[str], turns: Sequence[int]) -> FloatArray:
        shape = (feature_matrix(texts, turns) - self.shape_mean) / self.shape_std
        return np.hstack([emb.astype(np.float64), self.shape_weight * shape])

    def transform(self, conversations: Sequence[Sequence[ChatTurn]]) -> FloatArray:
        texts = [render_conversation(c) for c in conversations]
        emb = self.encoder.encode(texts)
        return self.from_embeddings(emb, texts, [len(c) for c in conversations])


def check_encoder(config_fingerprint: str, encoder: MiniLMEncoder) -> None:
    """Refuse an artifact trained on different encoder weights than the installed ones."""
    if not config_fingerprint:
        raise RouterArtifactError("artifact does not record which all-MiniLM-L6-v2 weights it was trained with")
    if config_fingerprint != encoder.fingerprint:
        raise RouterArtifactError(
            "artifact was trained with a different all-MiniLM-L6-v2 build "
            f"(weights sha256 {config_fingerprint[:12]}…, installed {encoder.fingerprint[:12]}…)"
        )


def trained_encoder(fingerprint: str, encoder: MiniLMEncoder | None = None) -> MiniLMEncoder:
    """The encoder an artifact was trained with, checked by :func:`check_encoder`.

    ``encoder`` when given (a combined router shares one between its members), else the
    installed profile whose fingerprint is ``fingerprint``.
    """
    enc = encoder or MiniLMEncoder.matching(fingerprint)
    check_encoder(fingerprint, enc)
    return enc


class EmbeddingRouter(Router):
    """MiniLM embedding + shape features → multinomial logistic regression on routing gain."""

    name = "embedding"

    def __init__(
        self,
        features: EmbeddedFeatures,
        head: GainHead,
        config: EmbeddingConfig,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(metadata)
        if head.dim != features.dim:
            raise RouterArtifactError(f"embedding head expects {head.dim} features, got {features.dim}")
        self._features = features
        self._head = head
        self._config = config

    @property
    def encoder(self) -> MiniLMEncoder:
        """The (lazily loaded) sentence encoder."""
        return self._features.encoder

    def score(self, conversation: Sequence[ChatTurn]) -> float:
        """Score one conversation (all turns rendered together)."""
        return float(self.score_many([conversation])[0])

    def score_many(self, conversations: Sequence[Sequence[ChatTurn]]) -> FloatArray:
        """Batched scoring."""
        return self._head.score(self._features.transform(conversations))

    def score_embeddings(self, emb: npt.NDArray[np.float32], texts: Sequence[str], turns: Sequence[int]) -> FloatArray:
        """Score from precomputed embeddings of the rendered ``texts`` (used by the ensemble)."""
        return self._head.score(self._features.from_embeddings(emb, texts, turns))

    def export(self) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
        """(JSON config, arrays) to persist."""
        return asdict(self._config), {
            "shape_mean": self._features.shape_mean,
            "shape_std": self._features.shape_std,
            "coef": self._head.coef,
            "intercept": self._head.intercept,
        }

    @classmethod
    def from_parts(
        cls,
        config: Mapping[str, Any],
        arrays: Mapping[str, npt.NDArray[Any]],
        metadata: Mapping[str, Any],
        encoder: MiniLMEncoder | None = None,
    ) -> EmbeddingRouter:
        """Rebuild from :meth:`export` output; verifies the encoder weights fingerprint."""
        try:
            cfg = EmbeddingConfig(**config)
            enc = trained_encoder(cfg.encoder_fingerprint, encoder)
            feats = EmbeddedFeatures(
                enc,
                np.asarray(arrays["shape_mean"], np.float32),
                np.asarray(arrays["shape_std"], np.float32),
                cfg.shape_weight,
            )
            head = GainHead(np.asarray(arrays["coef"], np.float32), np.asarray(arrays["intercept"], np.float32))
        except (KeyError, TypeError, ValueError) as exc:
            raise RouterArtifactError(f"embedding artifact is malformed: {exc}") from exc
        return cls(feats, head, cfg, metadata)


def embed_dataset(
    data: LabeledPrompts, encoder: MiniLMEncoder, progress: bool = False
) -> tuple[list[str], npt.NDArray[np.float32]]:
    """Rendered texts and (disk-cached) embeddings of every prompt in ``data``."""
    texts = [render_conversation(c) for c in data.conversations()]
    return texts, encoder.encode_cached(texts, progress=progress)


def train_embedding(
    data: LabeledPrompts,
    seed: int = 0,
    config: EmbeddingConfig | None = None,
    progress: bool = False,
    encoder: MiniLMEncoder | None = None,
) -> EmbeddingRouter:
    """Fit the embedding router on ``data`` (embeddings are cached on disk between runs)."""
    enc = encoder or MiniLMEncoder.for_training()
    cfg = config or EmbeddingConfig()
    cfg = EmbeddingConfig(c=cfg.c, shape_weight=cfg.shape_weight, encoder_fingerprint=enc.fingerprint)
    texts, emb = embed_dataset(data, enc, progress)
    turns = [len(c) for c in data.conversations()]
    shape = feature_matrix(texts, turns)
    mean = shape.mean(axis=0).astype(np.float32)
    std = np.maximum(shape.std(axis=0), 1e-6).astype(np.float32)
    feats = EmbeddedFeatures(enc, mean, std, cfg.shape_weight)
    x = feats.from_embeddings(emb, texts, turns)
    head = fit_gain_head(x, gain_labels(data.weak, data.strong), cfg.c, seed)
    return EmbeddingRouter(feats, head, cfg)
