"""StateStore end to end: URL forms (TCP with password, unix socket), health, lifecycle."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from gateway.redis_server import find_redis_server_binary
from gateway.state import StateConfig, StateStore, redact_url
from gateway.state.errors import StateUnavailableError
from tests.conftest import free_port
from tests.integration.state.conftest import StoreFactory, dead_redis_url, unique_prefix

PASSWORD = "s3cret-redis-pw"


@pytest.fixture()
def private_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A real redis-server with a password, on TCP and on a unix socket (EmbeddedRedis has neither option)."""
    port, sock = free_port(), tmp_path / "redis.sock"
    process = subprocess.Popen(
        [
            str(find_redis_server_binary()),
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--requirepass", PASSWORD,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis(unix_socket_path=str(sock), password=PASSWORD, socket_timeout=0.5).ping():
                    break
            except (redis.ConnectionError, FileNotFoundError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port, sock
    finally:
        process.terminate()
        process.wait(10)


async def test_tcp_with_password_and_unix_socket(private_redis: tuple[int, Path]) -> None:
    port, sock = private_redis
    config = StateConfig(prefix=unique_prefix())
    urls = [f"redis://:{PASSWORD}@127.0.0.1:{port}/0", f"unix://{sock}?db=0&password={PASSWORD}"]
    for i, url in enumerate(urls):
        assert PASSWORD not in redact_url(url)
        async with StateStore.from_url(url, config, environ={}) as store:
            assert not store.health.degraded
            assert (await store.rate_limiter.check_and_consume(f"k{i}", rpm=1, tpm=None)).allowed
    # Both URLs reach the same server: over the socket, the TCP store's request counts.
    async with StateStore.from_url(urls[1], config, environ={}) as store:
        assert not (await store.rate_limiter.check_and_consume("k0", rpm=1, tpm=None)).allowed
    wrong = f"redis://:wrong@127.0.0.1:{port}/0"
    async with StateStore.from_url(wrong, config, environ={}) as store:
        assert store.health.degraded
        assert PASSWORD not in (store.health.last_error or "") and "wrong" not in (store.health.last_error or "")


async def test_health_ping_check_and_snapshot(make_store: StoreFactory) -> None:
    store = make_store()
    assert await store.start()
    await store.health.check()
    assert store.health.snapshot() == {"degraded": False, "down_for_s": None, "failed_calls": 0, "last_error": None}
    down = make_store(dead_redis_url())
    assert not await down.start()  # a dead Redis at start is not fatal
    with pytest.raises(StateUnavailableError) as info:
        await down.health.check()
    assert info.value.status_code == 503
    snapshot = down.health.snapshot()
    assert snapshot["degraded"] and snapshot["failed_calls"] >= 1
    assert "ConnectionError" in str(snapshot["last_error"])


def test_unsupported_url_scheme() -> None:
    with pytest.raises(ValueError, match="scheme"):
        StateStore.from_url("memcached://127.0.0.1:11211", environ={})
