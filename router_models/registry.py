"""Registry of router implementations by name (immutable, RouteLLM-style).

Each entry knows how to train its router and how to rebuild it from artifact parts. Registering
a new router means adding a :class:`RouterSpec` to :data:`ROUTERS`' construction below.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy.typing as npt

from router_models.base import Router
from router_models.data import LabeledPrompts
from router_models.embedding import EmbeddingRouter, train_embedding
from router_models.encoder import MiniLMEncoder
from router_models.ensemble import EnsembleRouter, train_ensemble
from router_models.errors import RouterError
from router_models.knn import KnnRouter, train_knn
from router_models.lexical import LexicalRouter, train_lexical
from router_models.stacked import StackedRouter, train_stacked


@dataclass(frozen=True)
class TrainContext:
    """Shared state for training several routers on the same data.

    ``encoder`` is shared so embeddings are computed (or read from the disk cache) once;
    ``trained`` holds routers already fitted on the same data for reuse by the ensemble.
    """

    seed: int = 0
    progress: bool = False
    encoder: MiniLMEncoder = field(default_factory=lambda: MiniLMEncoder.for_training())
    trained: Mapping[str, Router] = field(default_factory=dict)


TrainFn = Callable[[LabeledPrompts, TrainContext], Router]
FromPartsFn = Callable[[Mapping[str, Any], Mapping[str, npt.NDArray[Any]], Mapping[str, Any]], Router]


@dataclass(frozen=True)
class RouterSpec:
    """How to train and load one router kind.

    ``latency_class`` is ``"lexical"`` (decision budget 3 ms p99) or ``"embedding"`` (10 ms p99).
    ``algorithm_version`` is bumped whenever scoring changes incompatibly; old artifacts are
    then refused at load.
    """

    name: str
    description: str
    algorithm_version: int
    latency_class: str
    train: TrainFn
    from_parts: FromPartsFn

    @property
    def latency_budget_ms(self) -> float:
        """p99 decision budget at 32 concurrent requests for this router's class."""
        return 3.0 if self.latency_class == "lexical" else 10.0


def _train_lexical(data: LabeledPrompts, ctx: TrainContext) -> Router:
    return train_lexical(data, ctx.seed, progress=ctx.progress)


def _train_embedding(data: LabeledPrompts, ctx: TrainContext) -> Router:
    return train_embedding(data, ctx.seed, progress=ctx.progress, encoder=ctx.encoder)


def _train_knn(data: LabeledPrompts, ctx: TrainContext) -> Router:
    return train_knn(data, ctx.seed, progress=ctx.progress, encoder=ctx.encoder)


def _train_ensemble(data: LabeledPrompts, ctx: TrainContext) -> Router:
    return train_ensemble(data, ctx.seed, ctx.progress, ctx.encoder, ctx.trained)


def _train_stacked(data: LabeledPrompts, ctx: TrainContext) -> Router:
    return train_stacked(data, ctx.seed, ctx.progress, ctx.encoder, ctx.trained)


ROUTERS: Mapping[str, RouterSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            RouterSpec(
                "lexical",
                "hashed word 1-2gram TF-IDF + prompt-shape features -> logistic regression on gain",
                1,
                "lexical",
                _train_lexical,
                LexicalRouter.from_parts,
            ),
            RouterSpec(
                "embedding",
                "all-MiniLM-L6-v2 embedding + prompt-shape features -> logistic regression on gain",
                1,
                "embedding",
                _train_embedding,
                EmbeddingRouter.from_parts,
            ),
            RouterSpec(
                "knn",
                "similarity-weighted kNN (K=100) over PCA-128 int8 MiniLM embeddings",
                1,
                "embedding",
                _train_knn,
                KnnRouter.from_parts,
            ),
            RouterSpec(
                "ensemble",
                "mean held-out percentile of the lexical, embedding and kNN routers",
                1,
                "embedding",
                _train_ensemble,
                EnsembleRouter.from_parts,
            ),
            RouterSpec(
                "stacked",
                "mean held-out percentile of lexical, embedding, kNN and boosted trees over out-of-fold "
                "neighbour statistics + shape + answer-choice features",
                1,
                "embedding",
                _train_stacked,
                StackedRouter.from_parts,
            ),
        )
    }
)

#: Pseudo-routers understood by the evaluation harness (need labels, so they cannot be served).
BASELINES = ("random", "oracle")


def get_spec(name: str) -> RouterSpec:
    """Spec of router ``name`` or a :class:`RouterError` listing the known names."""
    try:
        return ROUTERS[name]
    except KeyError:
        raise RouterError(f"unknown router {name!r}; known routers: {', '.join(ROUTERS)}") from None


def train_routers(
    names: Sequence[str], data: LabeledPrompts, seed: int, encoder: MiniLMEncoder, progress: bool = False
) -> dict[str, Router]:
    """Train routers ``names`` on ``data`` in the order given, by name.

    Each one sees those trained before it, so a combiner named after its members reuses them
    instead of refitting (the eval's order, lexical … stacked, relies on this).
    """
    trained: dict[str, Router] = {}
    for name in names:
        ctx = TrainContext(seed=seed, progress=progress, encoder=encoder, trained=dict(trained))
        trained[name] = get_spec(name).train(data, ctx)
    return trained
