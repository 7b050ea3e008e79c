"""Gradient-boosted trees as plain arrays (no pickle), evaluated with numpy.

scikit-learn's :class:`~sklearn.ensemble.HistGradientBoostingClassifier` is fitted at training
time and flattened into a few arrays (one row per tree node); scoring walks all trees at once
level by level, so a request costs ``max_depth`` vectorised steps over the trees (~0.1 ms). The
flattened model reproduces ``predict_proba`` up to float rounding (numerical features only; a
tree never sees categorical splits because the trainer does not declare any).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from router_models.errors import RouterArtifactError

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TreeEnsemble:
    """Flattened boosted trees for ``n_outputs`` raw outputs (softmax over them for classes).

    ``roots`` is ``(n_iterations, n_outputs)``: the global node id of each tree's root; the
    node arrays are indexed by global node id (children ids are global too).
    """

    baseline: FloatArray
    roots: npt.NDArray[np.int32]
    feature: npt.NDArray[np.int32]
    threshold: FloatArray
    missing_left: npt.NDArray[np.bool_]
    left: npt.NDArray[np.int32]
    right: npt.NDArray[np.int32]
    is_leaf: npt.NDArray[np.bool_]
    value: FloatArray
    n_features: int

    def __post_init__(self) -> None:
        n = self.feature.shape[0]
        arrays = (self.threshold, self.missing_left, self.left, self.right, self.is_leaf, self.value)
        if any(a.shape != (n,) for a in arrays):
            raise RouterArtifactError("tree node arrays disagree in length")
        if self.roots.ndim != 2 or self.roots.shape[1] != self.baseline.shape[0]:
            raise RouterArtifactError(f"tree roots have shape {self.roots.shape}, baseline {self.baseline.shape}")
        if n and (self.left.max(initial=0) >= n or self.right.max(initial=0) >= n or self.roots.max(initial=0) >= n):
            raise RouterArtifactError("tree child or root index out of range")
        inner = ~self.is_leaf
        if np.any(self.feature[inner] < 0) or np.any(self.feature[inner] >= self.n_features):
            raise RouterArtifactError("tree split feature index out of range")
        # A split's children must come after it, so every walk ends at a leaf.
        ids = np.arange(n)
        if np.any(self.left[inner] <= ids[inner]) or np.any(self.right[inner] <= ids[inner]):
            raise RouterArtifactError("tree children must follow their parent")

    def raw(self, x: FloatArray) -> FloatArray:
        """Raw boosted outputs ``(n_rows, n_outputs)`` for features ``x`` ``(n_rows, n_features)``."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected (n, {self.n_features}) features, got {x.shape}")
        n_rows = x.shape[0]
        flat_roots = self.roots.reshape(-1)
        node = np.broadcast_to(flat_roots, (n_rows, flat_roots.size)).copy()
        rows = np.arange(n_rows)[:, None]
        while True:
            active = ~self.is_leaf[node]
            if not active.any():
                break
            v = x[rows, self.feature[node]]
            go_left = np.where(np.isnan(v), self.missing_left[node], v <= self.threshold[node])
            node = np.where(active, np.where(go_left, self.left[node], self.right[node]), node)
        per_tree = self.value[node].reshape(n_rows, *self.roots.shape)
        return np.asarray(per_tree.sum(axis=1) + self.baseline, dtype=np.float64)

    def proba(self, x: FloatArray) -> FloatArray:
        """Class probabilities (softmax of :meth:`raw`; sigmoid for a single output)."""
        r = self.raw(x)
        if r.shape[1] == 1:
            p1 = 1.0 / (1.0 + np.exp(-r[:, 0]))
            return np.column_stack([1.0 - p1, p1])
        r = r - r.max(axis=1, keepdims=True)
        e = np.exp(r)
        return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)

    def arrays(self, prefix: str = "") -> dict[str, npt.NDArray[Any]]:
        """Arrays to persist (keys prefixed with ``prefix``)."""
        return {
            f"{prefix}baseline": self.baseline,
            f"{prefix}roots": self.roots,
            f"{prefix}feature": self.feature,
            f"{prefix}threshold": self.threshold,
            f"{prefix}missing_left": self.missing_left,
            f"{prefix}left": self.left,
            f"{prefix}right": self.right,
            f"{prefix}is_leaf": self.is_leaf,
            f"{prefix}value": self.value,
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, npt.NDArray[Any]], n_features: int, prefix: str = "") -> TreeEnsemble:
        """Inverse of :meth:`arrays` (raises ``RouterArtifactError`` on bad shapes/indices)."""
        try:
            return cls(
                baseline=np.asarray(arrays[f"{prefix}baseline"], np.float64),
                roots=np.asarray(arrays[f"{prefix}roots"], np.int32),
                feature=np.asarray(arrays[f"{prefix}feature"], np.int32),
                threshold=np.asarray(arrays[f"{prefix}threshold"], np.float64),
                missing_left=np.asarray(arrays[f"{prefix}missing_left"], np.bool_),
                left=np.asarray(arrays[f"{prefix}left"], np.int32),
                right=np.asarray(arrays[f"{prefix}right"], np.int32),
                is_leaf=np.asarray(arrays[f"{prefix}is_leaf"], np.bool_),
                value=np.asarray(arrays[f"{prefix}value"], np.float64),
                n_features=n_features,
            )
        except KeyError as exc:
            raise RouterArtifactError(f"tree arrays missing: {exc}") from exc


def flatten_hgb(model: Any) -> TreeEnsemble:
    """Flatten a fitted ``HistGradientBoostingClassifier`` (numerical features only)."""
    predictors = model._predictors  # list (iterations) of lists (outputs) of TreePredictor
    n_out = len(predictors[0])
    roots = np.zeros((len(predictors), n_out), dtype=np.int32)
    fields: dict[str, list[npt.NDArray[Any]]] = {k: [] for k in ("feature", "thr", "miss", "l", "r", "leaf", "val")}
    offset = 0
    for i, trees in enumerate(predictors):
        for j, tree in enumerate(trees):
            nodes = tree.nodes
            if np.any(nodes["is_categorical"]):
                raise RouterArtifactError("categorical splits are not supported")
            leaf = nodes["is_leaf"].astype(bool)
            roots[i, j] = offset
            fields["feature"].append(np.where(leaf, 0, nodes["feature_idx"]).astype(np.int32))
            fields["thr"].append(nodes["num_threshold"].astype(np.float64))
            fields["miss"].append(nodes["missing_go_to_left"].astype(bool))
            fields["l"].append(np.where(leaf, 0, nodes["left"].astype(np.int64) + offset).astype(np.int32))
            fields["r"].append(np.where(leaf, 0, nodes["right"].astype(np.int64) + offset).astype(np.int32))
            fields["leaf"].append(leaf)
            fields["val"].append(nodes["value"].astype(np.float64))
            offset += len(nodes)
    baseline = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1)
    return TreeEnsemble(
        baseline=baseline,
        roots=roots,
        feature=np.concatenate(fields["feature"]),
        threshold=np.concatenate(fields["thr"]),
        missing_left=np.concatenate(fields["miss"]),
        left=np.concatenate(fields["l"]),
        right=np.concatenate(fields["r"]),
        is_leaf=np.concatenate(fields["leaf"]),
        value=np.concatenate(fields["val"]),
        n_features=int(model.n_features_in_),
    )


def constant_trees(n_features: int) -> TreeEnsemble:
    """A model with one leaf per output and equal outputs (uniform probabilities), used when the
    training labels hold a single class and there is nothing to learn."""
    return TreeEnsemble(
        baseline=np.zeros(3, np.float64),
        roots=np.arange(3, dtype=np.int32).reshape(1, 3),
        feature=np.zeros(3, np.int32),
        threshold=np.zeros(3, np.float64),
        missing_left=np.zeros(3, np.bool_),
        left=np.zeros(3, np.int32),
        right=np.zeros(3, np.int32),
        is_leaf=np.ones(3, np.bool_),
        value=np.zeros(3, np.float64),
        n_features=n_features,
    )
