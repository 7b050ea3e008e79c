"""What a fault needs from the system under test, and two ways to provide it.

:class:`FaultTarget` is the narrow interface every fault function takes: where the gateway
answers, its config, the fake large upstream's behaviour, and control over Redis's process.
:class:`~loadtest.faults.stack.FaultStack` starts a whole stack and is one; :class:`RunningGateway`
wraps a gateway someone else started (the serve test suite's session gateway) and is the
other, so CI runs the same fault code as ``run_all``.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import psutil

from deployments.runtime import LocalGateway
from gateway.config import GatewayConfig
from gateway.redis_server import EmbeddedRedis
from tests.fakes.openai_upstream import UpstreamBehaviour

__all__ = ["FaultTarget", "RedisProcess", "RunningGateway", "large_tier", "served_name", "small_tier"]


def small_tier(config: GatewayConfig) -> str:
    """The cheapest tier (tiers are listed cheapest first)."""
    return next(iter(config.tiers))


def large_tier(config: GatewayConfig) -> str:
    """The most expensive tier: the one behind the fake upstream."""
    return list(config.tiers)[-1]


def served_name(config: GatewayConfig, tier: str) -> str:
    """The model name clients use for ``tier``."""
    return config.tiers[tier].served_model_name


class FaultTarget(Protocol):
    """The system a fault runs against."""

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the gateway."""

    @property
    def config(self) -> GatewayConfig:
        """The gateway's effective config (tiers cheapest first, Redis URL filled in)."""

    @property
    def upstream(self) -> UpstreamBehaviour:
        """The fake large upstream's behaviour, mutable while the gateway runs."""

    @property
    def redis(self) -> RedisProcess:
        """Kill and restart control over the gateway's Redis."""

    def reset_upstream(self) -> None:
        """Put the upstream back to healthy."""


class RedisProcess:
    """The ``redis-server`` child process serving ``url``: find it, SIGKILL it, start it again.

    The server must be a child of this process (an :class:`EmbeddedRedis` started here, by
    a ``LocalGateway`` or directly); ``owned`` is that object when the caller has it, so a
    killed process is reaped at once.
    """

    def __init__(self, url: str, state_dir: str | os.PathLike[str], owned: EmbeddedRedis | None = None) -> None:
        parts = urlsplit(url)
        if parts.port is None:
            raise ValueError(f"redis url without a port: {url}")
        self.url = url
        self.port = parts.port
        self.state_dir = Path(state_dir)
        self._server = owned

    def pid(self) -> int | None:
        """Pid of the live ``redis-server`` on the port (``None`` if none)."""
        port = str(self.port)
        for child in psutil.Process().children(recursive=False):
            try:
                # redis-server retitles itself "redis-server 127.0.0.1:<port>".
                title, status = " ".join(child.cmdline()), child.status()
            except psutil.Error:
                continue
            if status != psutil.STATUS_ZOMBIE and "redis-server" in title and port in title.replace(":", " ").split():
                return int(child.pid)
        return None

    def kill(self) -> int:
        """SIGKILL the server (no shutdown save: only what its AOF holds survives); returns its pid."""
        pid = self.pid()
        if pid is None:
            raise RuntimeError(f"no redis-server is listening on port {self.port}")
        os.kill(pid, signal.SIGKILL)
        if self._server is not None:
            self._server.stop()  # only reaps the dead process
        return pid

    def restart(self) -> None:
        """Start ``redis-server`` again on the same port and data folder (it replays its AOF)."""
        if self._server is not None:
            self._server.stop()  # reaps a killed process, or frees the port of a live one
        self._server = EmbeddedRedis(self.state_dir, port=self.port, persist=True)
        self._server.start()

    def stop(self) -> None:
        """Stop the server this object started or was given (``LocalGateway`` stops its own)."""
        if self._server is not None:
            self._server.stop()
            self._server = None


class RunningGateway:
    """A :class:`FaultTarget` over an already running ``LocalGateway`` and fake upstream.

    Call :meth:`close` when done: a Redis restarted by a fault belongs to this object.
    """

    def __init__(self, gateway: LocalGateway, upstream: UpstreamBehaviour, *, healthy_latency_s: float = 0.0) -> None:
        self._gateway = gateway
        self._upstream = upstream
        self._healthy_latency_s = healthy_latency_s
        url = gateway.config.redis.url
        if url is None:
            raise ValueError("the gateway has no Redis URL")
        self._redis = RedisProcess(url, gateway.config.redis.state_dir)

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the gateway."""
        return self._gateway.base_url

    @property
    def config(self) -> GatewayConfig:
        """The gateway's effective config."""
        return self._gateway.config

    @property
    def upstream(self) -> UpstreamBehaviour:
        """The fake large upstream's behaviour."""
        return self._upstream

    @property
    def redis(self) -> RedisProcess:
        """Kill and restart control over the gateway's Redis."""
        return self._redis

    def reset_upstream(self) -> None:
        """Healthy again: no failure, no hang, the original latency."""
        self._upstream.fail_status = None
        self._upstream.hang = False
        self._upstream.latency_s = self._healthy_latency_s

    def close(self) -> None:
        """Stop a Redis this object restarted (the gateway's own one is the gateway's to stop)."""
        self._redis.stop()
