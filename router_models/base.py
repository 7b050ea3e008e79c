"""The :class:`Router` interface shared by every routing model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from router_models.conversation import ChatTurn


class Router(ABC):
    """Scores a chat conversation with the probability that the large model is needed.

    Implementations must be thread-safe for concurrent :meth:`score` calls (the serving replica
    scores requests from a thread pool) and CPU-light. ``metadata`` is the artifact metadata
    (calibration table, default threshold, metrics, ...) or empty for an untrained router.
    """

    #: Registry name of the implementation (e.g. ``"lexical"``).
    name: str = "abstract"

    def __init__(self, metadata: Mapping[str, Any] | None = None) -> None:
        self._metadata: Mapping[str, Any] = MappingProxyType(dict(metadata or {}))

    @property
    def metadata(self) -> Mapping[str, Any]:
        """Read-only artifact metadata (see :mod:`router_models.artifacts`)."""
        return self._metadata

    @property
    def default_threshold(self) -> float | None:
        """Threshold sending the calibrated default share (30%) of traffic to the large model."""
        value = self._metadata.get("default_threshold")
        return None if value is None else float(value)

    @abstractmethod
    def score(self, conversation: Sequence[ChatTurn]) -> float:
        """Probability-like score in [0, 1] that ``conversation`` (all turns) needs the large model."""

    def score_many(self, conversations: Sequence[Sequence[ChatTurn]]) -> npt.NDArray[np.float64]:
        """Score several conversations; implementations override this with a batched version."""
        return np.array([self.score(c) for c in conversations], dtype=np.float64)

    def needs_large(self, conversation: Sequence[ChatTurn], threshold: float | None = None) -> bool:
        """Routing decision: ``score >= threshold`` (default: the calibrated default threshold)."""
        t = self.default_threshold if threshold is None else threshold
        if t is None:
            raise ValueError(f"router {self.name!r} has no calibrated default threshold")
        return self.score(conversation) >= t

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
