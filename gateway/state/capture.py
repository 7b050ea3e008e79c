"""A random sample of request conversations, kept for labelling.

A router for your traffic is trained on labelled samples of it (docs/routers.md), and the
ledger and traces keep no request text. With ``state.capture.share`` above zero, that share of
chat requests that were admitted (authenticated, valid, within limits) has its conversation
kept in one capped Redis list, as the line ``slm-router label`` reads:
``{"messages": [...]}``. Redis being down loses the sample, never the request.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from gateway.state.config import CaptureConfig
from gateway.state.errors import REDIS_FAILURES, StateUnavailableError
from gateway.state.health import RedisHealth
from gateway.state.keys import KeySpace

__all__ = ["ConversationCapture"]


class ConversationCapture:
    """Samples conversations into ``<prefix>:capture`` and reads them back for export."""

    def __init__(
        self,
        client: Redis,
        keys: KeySpace,
        health: RedisHealth,
        config: CaptureConfig,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self._key = keys.captured_conversations()
        self._health = health
        self._config = config
        self._rng = rng or random.Random()

    @property
    def enabled(self) -> bool:
        """Whether any share of requests is sampled."""
        return self._config.share > 0

    def sampled(self) -> bool:
        """Draw whether this request is kept (share 1 keeps every one)."""
        return self.enabled and self._rng.random() < self._config.share

    async def keep(self, messages: Sequence[Mapping[str, Any]]) -> bool:
        """Keep one conversation; False when it was not kept (too big, Redis down)."""
        try:
            line = json.dumps({"messages": list(messages)}, separators=(",", ":"), ensure_ascii=False).encode()
        except (TypeError, ValueError):
            return False
        if len(line) > self._config.max_entry_bytes or not self._health.allow_attempt():
            return False
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.lpush(self._key, line)
                pipe.ltrim(self._key, 0, self._config.max_entries - 1)
                await pipe.execute()
        except REDIS_FAILURES as exc:
            self._health.record_failure(exc)
            return False
        self._health.record_success()
        return True

    async def export(self, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Up to ``limit`` kept conversations, newest first, and how many are kept in all
        (503 when Redis is down)."""
        raw, kept = await self._admin(lambda pipe: (pipe.lrange(self._key, 0, max(limit, 1) - 1), pipe.llen(self._key)))
        return [json.loads(item) for item in raw], int(kept)

    async def clear(self) -> int:
        """Drop every kept conversation; returns how many there were (503 when Redis is down)."""
        kept, _ = await self._admin(lambda pipe: (pipe.llen(self._key), pipe.delete(self._key)))
        return int(kept)

    async def _admin(self, queue: Callable[[Pipeline], object]) -> list[Any]:
        # The admin side, unlike keep(), must not pass a Redis outage off as an empty list.
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                queue(pipe)
                results: list[Any] = await pipe.execute()
        except REDIS_FAILURES as exc:
            self._health.record_failure(exc)
            raise StateUnavailableError("captured conversations cannot be read right now", retry_after=1) from exc
        self._health.record_success()
        return results
