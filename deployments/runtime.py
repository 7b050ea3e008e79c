"""Starting and stopping the whole local stack: Redis, Ray, Serve and the application.

The CLI's ``serve`` and the test suite both use :class:`LocalGateway`, so tests run the
exact start-up path users run.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from types import TracebackType

from gateway.config import GatewayConfig
from gateway.errors import ConfigError
from gateway.redis_server import EmbeddedRedis

__all__ = ["APP_NAME", "LocalGateway"]

logger = logging.getLogger(__name__)

APP_NAME = "slm-router"


def _check_port_free(host: str, port: int) -> None:
    """Raise :class:`ConfigError` when another process listens on ``host:port``.

    Serve's proxy would find out only after Redis and Ray are up (~15 s), and then fail with a
    traceback. A check, not a reservation: the port can still be taken in between.
    """
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        # As a server binds: a port left in TIME_WAIT by an earlier run is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise ConfigError(
                f"server.port {port} on {host} is not free ({exc.strerror}): another process uses it; "
                "choose another port (server.port, SLM_ROUTER__SERVER__PORT or serve --port)"
            ) from exc


class LocalGateway:
    """Runs the gateway on local Ray: ``start()`` returns once ``/health/ready`` says ready."""

    def __init__(self, config: GatewayConfig, *, num_cpus: int | None = None, ready_timeout_s: float = 600.0) -> None:
        self._config = config
        self._num_cpus = num_cpus
        self._ready_timeout_s = ready_timeout_s
        self._redis: EmbeddedRedis | None = None
        self._started_ray = False

    @property
    def config(self) -> GatewayConfig:
        """The effective config (with the embedded Redis URL filled in once started)."""
        return self._config

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the HTTP front door."""
        server = self._config.server
        host = "127.0.0.1" if server.host in ("0.0.0.0", "::") else server.host
        return f"http://{host}:{server.port}"

    def start(self) -> LocalGateway:
        """Start Redis (unless ``redis.url`` is set), Ray, Serve and the app; wait for readiness."""
        import ray
        from ray import serve

        from deployments.app_builder import build_app
        from gateway.accounting import CostCalculator

        _check_port_free(self._config.server.host, self._config.server.port)
        if self._config.accounting.enabled:
            # Fail before Ray starts when a tier has no price (the replicas would loop on it).
            CostCalculator.from_config(self._config.accounting, self._config.tiers)
        if self._config.redis.url is None:
            self._redis = EmbeddedRedis(self._config.redis.state_dir)
            url = self._redis.start()
            self._config = self._config.model_copy(update={"redis": self._config.redis.model_copy(update={"url": url})})
        # Ray's dashboard and usage reporting need network/ports we don't want locally.
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # Local models and the router's encoder load from disk; never wait on a model hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        if not ray.is_initialized():
            # ray.init puts a SIGTERM handler of its own in the driver (exit at once; Ray's core
            # worker then aborts the process): keep the caller's, if it has one, so a program
            # that stops on SIGTERM (slm-router serve) still stops in order.
            kept = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
            if not callable(kept):
                kept = None  # the default action: Ray's exit, which runs cleanups, is better
            ray.init(
                num_cpus=self._num_cpus,
                include_dashboard=False,
                configure_logging=True,
                logging_level=logging.WARNING,
                log_to_driver=True,
            )
            self._started_ray = True
            if kept is not None:
                signal.signal(signal.SIGTERM, kept)
        server = self._config.server
        serve.start(http_options={"host": server.host, "port": server.port})
        serve.run(build_app(self._config), name=APP_NAME, route_prefix="/", blocking=False)
        self._wait_ready()
        return self

    def redeploy(self, config: GatewayConfig) -> None:
        """Apply a new config to the running application.

        Serve compares it with what runs: a change confined to the live routing settings
        (``user_config``) reconfigures the ingress replicas in place, without a restart.
        """
        from ray import serve

        from deployments.app_builder import build_app

        if config.redis.url is None:
            config = config.model_copy(update={"redis": self._config.redis})
        serve.run(build_app(config), name=APP_NAME, route_prefix="/", blocking=False)
        self._config = config
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._ready_timeout_s
        last = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.base_url}/health/ready", timeout=5) as response:
                    if response.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                last = exc.read().decode(errors="replace")
            except OSError as exc:
                last = str(exc)
            time.sleep(0.5)
        raise RuntimeError(f"the gateway was not ready within {self._ready_timeout_s:g}s: {last}")

    def stop(self) -> None:
        """Tear everything down (only what this object started)."""
        try:
            import ray
            from ray import serve
            from ray.exceptions import RayError
            from ray.serve.exceptions import RayServeException

            if ray.is_initialized():
                # Deleting the application first lets its replicas finish the requests in
                # flight (Serve's graceful shutdown) while the proxy still carries their
                # answers; serve.shutdown alone takes the proxy down under them.
                try:
                    serve.delete(APP_NAME)
                except (RayServeException, RayError, TimeoutError) as exc:  # e.g. a failed start left none
                    logger.warning("could not drain the application before shutdown: %s", exc)
                serve.shutdown()
                if self._started_ray:
                    ray.shutdown()
        finally:
            if self._redis is not None:
                self._redis.stop()
                self._redis = None

    def __enter__(self) -> LocalGateway:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
