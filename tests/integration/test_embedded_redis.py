"""The embedded redis-server: a real binary that starts, persists and stops."""

from __future__ import annotations

from pathlib import Path

import redis

from gateway.redis_server import EmbeddedRedis, find_redis_server_binary


def test_binary_is_redislites() -> None:
    assert find_redis_server_binary().name == "redis-server"


def test_start_persist_restart_stop(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with EmbeddedRedis(state) as server:
        client = redis.Redis.from_url(server.url)
        client.set("slm:test", "kept")
        port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    assert (state / "appendonly.aof").exists() or any(state.iterdir())
    with EmbeddedRedis(state, port=port) as again:
        assert redis.Redis.from_url(again.url).get("slm:test") == b"kept"
    try:
        redis.Redis(port=port, socket_connect_timeout=0.5).ping()
    except redis.ConnectionError:
        pass
    else:
        raise AssertionError("redis-server still running after stop")
