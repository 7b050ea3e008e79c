"""Learned routers from :mod:`router_models`, scored in a thread so the event loop never blocks."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError

__all__ = ["DEFAULT_ARTIFACT", "ThreadedRouterScorer", "load_scorer"]

#: ``routing.router_artifact`` value meaning the artifact shipped in the repository.
DEFAULT_ARTIFACT = "default"


class ThreadedRouterScorer:
    """Wraps a :class:`router_models.Router`; ``score`` runs in a small dedicated thread pool."""

    def __init__(self, router: Any, *, workers: int = 2) -> None:
        self._router = router
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="router-score")
        # The artifact's identity: a digest over its files' sha256 sums (from its metadata).
        files = router.metadata.get("files") or {}
        digest = hashlib.sha256(json.dumps(dict(files), sort_keys=True).encode()).hexdigest()[:12] if files else ""
        self._name = f"{router.name}@{digest}" if digest else str(router.name)
        # Keys and tenants name a few shares, each looked up on every request of theirs.
        self._share_thresholds: dict[float, float | None] = {}

    @property
    def name(self) -> str:
        """``<router>@<artifact digest>``."""
        return self._name

    @property
    def default_threshold(self) -> float | None:
        """The artifact's calibrated default threshold."""
        value = self._router.default_threshold
        return None if value is None else float(value)

    def threshold_for_share(self, large_share: float) -> float | None:
        """The threshold that sent ``large_share`` of the artifact's reference prompts to the large
        model (its calibration table), at most 1; ``None`` for an artifact without a table."""
        if large_share not in self._share_thresholds:
            from router_models.calibration import threshold_from_table

            table = (self._router.metadata.get("calibration") or {}).get("table")
            # The table's share 0 lies just above 1.0 (no score reaches it); a threshold is in [0, 1].
            value = min(1.0, threshold_from_table(table, large_share)) if table else None
            self._share_thresholds[large_share] = value
        return self._share_thresholds[large_share]

    def _score_sync(self, messages: Sequence[Mapping[str, Any]]) -> float:
        from router_models.conversation import turn_from_message

        # The router's own reading of a chat message, the same one its training data went through.
        return float(self._router.score([turn_from_message(m) for m in messages]))

    async def score(self, messages: Sequence[Mapping[str, Any]]) -> float:
        """Score off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._score_sync, list(messages))

    def close(self) -> None:
        """Stop the thread pool."""
        self._executor.shutdown(wait=False, cancel_futures=True)


def load_scorer(artifact: str, *, workers: int = 2) -> ThreadedRouterScorer:
    """Load a router artifact (``"default"`` for the shipped one); errors are :class:`ConfigError`."""
    import router_models

    path = router_models.default_artifact_path() if artifact == DEFAULT_ARTIFACT else Path(artifact)
    try:
        router = router_models.load_router(path)
    except router_models.RouterError as exc:
        raise ConfigError(f"router artifact {path}: {exc}") from None
    return ThreadedRouterScorer(router, workers=workers)
