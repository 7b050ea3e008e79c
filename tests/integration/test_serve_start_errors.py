"""A gateway that cannot start says why at once, before it starts Redis or Ray."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployments.runtime import LocalGateway
from gateway.config import load_config
from gateway.errors import ConfigError


@pytest.fixture()
def taken_port() -> Iterator[int]:
    """A port another process (here: this one) listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


def test_a_port_in_use_is_a_config_error_before_anything_starts(taken_port: int, tmp_path: Path) -> None:
    config = load_config(
        None,
        environ={"SLM_ROUTER__SERVER__PORT": str(taken_port), "SLM_ROUTER__REDIS__STATE_DIR": str(tmp_path / "redis")},
    )
    gateway = LocalGateway(config)
    with pytest.raises(ConfigError, match=rf"server.port {taken_port} on 127.0.0.1 is not free"):
        gateway.start()
    # Serve's proxy used to find out ~15 s later, with Redis and Ray up, and fail with a traceback.
    assert not (tmp_path / "redis").exists()
    gateway.stop()  # nothing to tear down, and no error


def test_serve_on_a_port_in_use_exits_2_with_the_reason(
    taken_port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.cli import main

    monkeypatch.setenv("SLM_ROUTER__REDIS__STATE_DIR", str(tmp_path / "redis"))
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    assert main(["serve", "--port", str(taken_port)]) == 2
    err = capsys.readouterr().err
    assert f"error: server.port {taken_port} on 127.0.0.1 is not free" in err
    assert "--port" in err and "Traceback" not in err
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers


def test_a_free_port_passes_the_check(tmp_path: Path) -> None:
    from deployments.runtime import _check_port_free

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    _check_port_free("127.0.0.1", port)  # closed again: free
    _check_port_free("0.0.0.0", port)
