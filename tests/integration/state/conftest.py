"""Fixtures for the shared-state tests: StateStores ("replicas") on real redis-servers."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway.redis_server import EmbeddedRedis
from gateway.state import StateConfig, StateStore
from tests.integration.conftest import LIVE_REDIS_TIMEOUTS

StoreFactory = Callable[..., StateStore]


def unique_prefix() -> str:
    """A fresh key prefix, so tests sharing the session redis-server never see each other's keys."""
    return f"t{uuid.uuid4().hex[:12]}"


def dead_redis_url() -> str:
    """A loopback URL where nothing listens (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    return f"redis://127.0.0.1:{port}/0"


@pytest.fixture()
async def make_store(redis_server: EmbeddedRedis) -> AsyncIterator[StoreFactory]:
    """``make_store(url=None, prefix=None, **StateConfig fields)``: a started StateStore, closed after the test.

    Stores made in one test share one prefix unless told otherwise, like replicas of one gateway.
    """
    prefix = unique_prefix()
    stores: list[StateStore] = []

    def make(url: str | None = None, *, environ: dict[str, str] | None = None, **config: Any) -> StateStore:
        config.setdefault("prefix", prefix)
        config = {**LIVE_REDIS_TIMEOUTS, **config}
        store = StateStore.from_url(url or redis_server.url, StateConfig.model_validate(config), environ=environ or {})
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()
