"""A random sample of request conversations, kept for labelling.

A router for your traffic is trained on labelled samples of it (docs/routers.md), and the
ledger and traces keep no request text. With ``state.capture.share`` above zero, that share of
chat requests that were admitted (authenticated, valid, within limits) has its conversation
kept in one capped Redis sorted set, as the line ``slm-router label`` reads:
``{"messages": [...]}`` (plus ``tools`` and ``tool_choice`` when offered), scored by the time
it was kept. Retention (``max_age_s``) prunes by that score; a conversation sent again is kept
once, at its latest time. Requests that say ``"store": false``, and tenants the config
excludes, are never kept. Redis being down loses the sample, never the request.
"""

from __future__ import annotations

import json
import random
import time
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
    """Samples conversations into ``<prefix>:capture:conversations`` and reads them back for export."""

    def __init__(
        self,
        client: Redis,
        keys: KeySpace,
        health: RedisHealth,
        config: CaptureConfig,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._key = keys.captured_conversations()
        self._legacy_key = keys.legacy_captured_conversations()
        self._health = health
        self._config = config
        self._rng = rng or random.Random()
        # Wall-clock seconds, shared by every replica's view of an entry's age.
        self._clock = clock

    @property
    def enabled(self) -> bool:
        """Whether any share of requests is sampled."""
        return self._config.share > 0

    def sampled(self, tenant: str, store: bool | None = None) -> bool:
        """Draw whether a request of ``tenant`` is kept (share 1 keeps every one).

        Never for an excluded tenant or a request that says ``store: false`` (OpenAI's flag
        for "do not keep this for distillation or evals", which is what the sample is for).
        """
        if not self.enabled or store is False or tenant in self._config.exclude_tenants:
            return False
        return self._rng.random() < self._config.share

    async def keep(self, messages: Sequence[Mapping[str, Any]], tool_options: Mapping[str, Any] | None = None) -> bool:
        """Keep one conversation, with the ``tools`` and ``tool_choice`` it offered (so that
        labelling asks the models what production asked); False when it was not kept (too big,
        Redis down)."""
        entry = {"messages": list(messages), **(tool_options or {})}
        try:
            line = json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode()
        except (TypeError, ValueError):
            return False
        if len(line) > self._config.max_entry_bytes or not self._health.allow_attempt():
            return False
        now = self._clock()
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.zadd(self._key, {line: now})
                self._prune(pipe, now)
                pipe.zremrangebyrank(self._key, 0, -self._config.max_entries - 1)
                if self._config.max_age_s is None:
                    pipe.persist(self._key)  # a TTL left by an earlier config must not drop the sample
                else:
                    # Without new captures every entry ages out together: the key goes with them.
                    pipe.pexpire(self._key, max(1, int(self._config.max_age_s * 1000)))
                await pipe.execute()
        except REDIS_FAILURES as exc:
            self._health.record_failure(exc)
            return False
        self._health.record_success()
        return True

    async def export(self, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Up to ``limit`` kept conversations, newest first, and how many are kept in all
        (503 when Redis is down)."""

        def read(pipe: Pipeline) -> None:
            self._prune(pipe, self._clock())
            pipe.zrevrange(self._key, 0, max(limit, 1) - 1)
            pipe.zcard(self._key)

        *_, raw, kept = await self._admin(read)
        return [json.loads(item) for item in raw], int(kept)

    async def clear(self) -> int:
        """Drop every kept conversation; returns how many there were (503 when Redis is down).

        An earlier version's sample (a list without retention) goes too: clearing is how an
        operator removes captured text, whichever version kept it.
        """

        def drop(pipe: Pipeline) -> None:
            self._prune(pipe, self._clock())
            pipe.zcard(self._key)
            pipe.delete(self._key)

        def drop_legacy(pipe: Pipeline) -> None:
            pipe.llen(self._legacy_key)
            pipe.delete(self._legacy_key)

        *_, kept, _ = await self._admin(drop)
        # A transaction of its own: on Redis Cluster the two keys may live in different slots.
        legacy, _ = await self._admin(drop_legacy)
        return int(kept) + int(legacy)

    def _prune(self, pipe: Pipeline, now: float) -> None:
        """Queue the removal of conversations past ``max_age_s`` (a no-op without one)."""
        if self._config.max_age_s is not None:
            pipe.zremrangebyscore(self._key, "-inf", f"({now - self._config.max_age_s}")

    async def _admin(self, queue: Callable[[Pipeline], None]) -> list[Any]:
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
