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
from typing import Any

from gateway.config import GatewayConfig
from gateway.errors import ConfigError
from gateway.redis_server import EmbeddedRedis

__all__ = ["APP_NAME", "LocalGateway"]

logger = logging.getLogger(__name__)

APP_NAME = "slm-router"

#: After the last request has left the replicas, how long the proxy gets to write it out.
_PROXY_FLUSH_S = 0.5
#: Pause between rounds of drain calls while a replica still holds requests.
_DRAIN_POLL_S = 0.1


def _drain_round(handle: Any, calls: int, *, wait_s: float) -> dict[str, int]:
    """Send ``calls`` drain calls at once: the open requests of each replica that answered."""
    replies = [handle.drain.remote(wait_s) for _ in range(calls)]
    answered: dict[str, int] = {}
    for reply in replies:
        replica, still_open = reply.result(timeout_s=wait_s + 10)
        answered[replica] = still_open
    return answered


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
                # Draining first: newcomers get a retryable 503 from the replicas while the
                # route still exists, and the requests in flight finish. Once the application
                # is deleted, Serve's proxy answers newcomers with a plain-text 404 for as long
                # as its replicas take to stop (2 s at least), so after a drain the stop goes
                # straight to serve.shutdown (the proxy closes: connection refused), after a
                # moment for the proxy to write out the last answers it holds. Where the drain
                # could not run, deleting the application first lets the replicas finish what
                # is open (Serve's graceful shutdown) while the proxy still carries the answers;
                # serve.shutdown alone takes the proxy down under them.
                try:
                    still_open = self._drain_ingress()
                except Exception as exc:  # noqa: BLE001 - a courtesy to clients; the stop must go on
                    logger.warning("could not drain the ingress replicas: %s", exc)
                    still_open = None
                if still_open is None:
                    try:
                        serve.delete(APP_NAME)
                    except (RayServeException, RayError, TimeoutError) as exc:  # e.g. a failed start left none
                        logger.warning("could not drain the application before shutdown: %s", exc)
                elif still_open:
                    logger.warning(
                        "%d requests still open after graceful_shutdown_timeout_s (%gs); stopping anyway",
                        still_open,
                        self._config.ingress.graceful_shutdown_timeout_s,
                    )
                else:
                    time.sleep(_PROXY_FLUSH_S)
                serve.shutdown()
                if self._started_ray:
                    ray.shutdown()
        finally:
            if self._redis is not None:
                self._redis.stop()
                self._redis = None

    def _drain_ingress(self) -> int | None:
        """Put every running ingress replica into drain and wait until each has no request open.

        Returns how many requests are still open at the ingress's ``graceful_shutdown_timeout_s``
        (0: drained), or ``None`` when no replica was running (a failed start) or one of them
        never answered. Serve has no call that reaches every replica, so each round sends the
        ``drain`` call more times than there are replicas (they load-balance) until every
        replica id has answered: first with no wait, so that all of them refuse newcomers at
        once, then waiting until each says it has nothing open (a drained one answers at once).
        """
        from ray import serve

        from deployments.app_builder import INGRESS_NAME

        status = serve.status().applications.get(APP_NAME)
        deployment = status.deployments.get(INGRESS_NAME) if status is not None else None
        running = deployment.replica_states.get("RUNNING", 0) if deployment is not None else 0
        if running == 0:
            return None
        handle = serve.get_app_handle(APP_NAME)
        deadline = time.monotonic() + self._config.ingress.graceful_shutdown_timeout_s
        still_open: dict[str, int] = {}
        while len(still_open) < running and time.monotonic() < deadline:
            still_open |= _drain_round(handle, 2 * running, wait_s=0.0)
        while any(still_open.values()) and (left := deadline - time.monotonic()) > 0:
            still_open |= _drain_round(handle, 2 * running, wait_s=left)
            time.sleep(_DRAIN_POLL_S)
        logger.info(
            "drained %d of %d ingress replicas; requests still open: %d",
            len(still_open),
            running,
            sum(still_open.values()),
        )
        return sum(still_open.values()) if len(still_open) >= running else None

    def __enter__(self) -> LocalGateway:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
