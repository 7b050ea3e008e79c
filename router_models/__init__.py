"""Learned request routers for slm-router.

A router scores a whole chat conversation with the probability that the large (hosted) model is
needed; the gateway sends the request to the large model when the score reaches a calibrated
threshold. Public API::

    from router_models import ChatTurn, load_router, default_artifact_path
    router = load_router(default_artifact_path())
    p = router.score([ChatTurn("user", "Prove that sqrt(2) is irrational.")])
    use_large = p >= router.metadata["default_threshold"]

Heavy dependencies (scikit-learn, torch/onnxruntime) load lazily on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from router_models.base import Router
from router_models.conversation import ChatTurn, render_conversation
from router_models.errors import RouterArtifactError, RouterDataError, RouterError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from router_models.registry import RouterSpec

__all__ = [
    "ROUTERS",
    "ChatTurn",
    "Router",
    "RouterArtifactError",
    "RouterDataError",
    "RouterError",
    "calibrate",
    "default_artifact_path",
    "load_router",
    "render_conversation",
]


def default_artifact_path() -> Path:
    """Directory of the trained default router shipped in this package."""
    return Path(__file__).resolve().parent / "artifacts" / "default"


def load_router(path: Path | str) -> Router:
    """Load and verify a router artifact directory (see :mod:`router_models.artifacts`).

    Raises :class:`RouterArtifactError` when the artifact is missing, corrupt or incompatible.
    Only pass directories the operator controls (the default, or a configured path).
    """
    from router_models.artifacts import load_router as _load

    return _load(path)


def calibrate(router: Router, reference_prompts: Any, large_share: float = 0.3) -> float:
    """Threshold sending ``large_share`` of ``reference_prompts`` to the large model.

    See :func:`router_models.calibration.calibrate`.
    """
    from router_models.calibration import calibrate as _calibrate

    return _calibrate(router, reference_prompts, large_share)


def __getattr__(name: str) -> Any:
    # ROUTERS imports every implementation module (scipy etc.), so resolve it on first access.
    if name == "ROUTERS":
        from router_models.registry import ROUTERS

        routers: Mapping[str, RouterSpec] = ROUTERS
        return routers
    raise AttributeError(f"module 'router_models' has no attribute {name!r}")
