"""The embedded redis-server: a real binary that starts, persists and stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from gateway.redis_server import EmbeddedRedis, EmbeddedRedisError, find_redis_server_binary


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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's prctl")
def test_the_server_dies_with_a_parent_killed_without_cleanup(tmp_path: Path) -> None:
    # A gateway killed by SIGKILL (or cut short by Ray's SIGTERM handler) runs no stop():
    # its redis-server must not live on holding the state folder's append-only file.
    script = (
        "import sys, time\n"
        "from gateway.redis_server import EmbeddedRedis\n"
        f"print(EmbeddedRedis({str(tmp_path / 'state')!r}).start(), flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        url = parent.stdout.readline().strip()
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        assert client.ping()
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            client.ping()
        except redis.ConnectionError:
            return
        time.sleep(0.1)
    raise AssertionError("redis-server outlived the process that started it")


def test_a_ctrl_c_at_the_terminal_leaves_the_server_to_its_owner(tmp_path: Path) -> None:
    # Ctrl-C sends SIGINT to the whole foreground process group. The gateway finishes the
    # requests in flight and writes their ledger entries before it stops Redis; a server in
    # the group would die first and take those entries with it.
    script = (
        "import signal, sys, time\n"
        "from gateway.redis_server import EmbeddedRedis\n"
        f"server = EmbeddedRedis({str(tmp_path / 'state')!r})\n"
        "print(server.start(), flush=True)\n"
        "try:\n"
        "    time.sleep(600)\n"
        "except KeyboardInterrupt:\n"
        "    import redis\n"
        "    print(redis.Redis.from_url(server.url, socket_connect_timeout=1).ping(), flush=True)\n"
        "    server.stop()\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert owner.stdout is not None
        url = owner.stdout.readline().strip()
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        assert client.ping()
        os.killpg(owner.pid, signal.SIGINT)  # the terminal's Ctrl-C
        # The owner still reaches its server after the Ctrl-C, then stops it itself.
        assert owner.stdout.readline().strip() == "True"
        assert owner.wait(timeout=15) == 0
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
    with pytest.raises(redis.ConnectionError):
        client.ping()


def test_a_state_folder_serves_one_server_at_a_time(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with EmbeddedRedis(state) as first:
        with pytest.raises(EmbeddedRedisError, match=r"another redis-server already uses \S*state"):
            EmbeddedRedis(state).start()
        assert redis.Redis.from_url(first.url).ping()  # the refused start touched nothing
    with EmbeddedRedis(state) as second:  # free again once the first one stopped
        assert redis.Redis.from_url(second.url).ping()
        # A fault test SIGKILLs the server behind the owner's back and starts another on the
        # folder: the lock dies with the server, not with the object that started it.
        os.kill(int(redis.Redis.from_url(second.url).info("server")["process_id"]), signal.SIGKILL)
        with EmbeddedRedis(state) as third:
            assert redis.Redis.from_url(third.url).ping()


def test_serve_on_a_state_folder_in_use_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.cli import main

    monkeypatch.delenv("REDIS_URL", raising=False)  # the embedded server, whatever the environment

    state = tmp_path / "state"
    config = tmp_path / "config.yaml"
    packaged = (Path(__file__).parents[2] / "gateway" / "default_config.yaml").read_text(encoding="utf-8")
    assert "  state_dir: .state/redis\n" in packaged
    config.write_text(packaged.replace("  state_dir: .state/redis\n", f"  state_dir: {state}\n"), encoding="utf-8")
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with EmbeddedRedis(state):
        assert main(["serve", "--config", str(config)]) == 2
    assert "error: another redis-server already uses" in capsys.readouterr().err
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers  # Ctrl-C works again
