"""The stack a fault runs against: real Redis, the real vLLM small model, a fake large upstream.

:class:`FaultStack` starts, on loopback only:

* an :class:`~gateway.redis_server.EmbeddedRedis` owned by the harness (so a fault can kill
  it and start it again on the same port and data folder), with AOF persistence as in the
  local profile;
* a :class:`~tests.fakes.openai_upstream.FakeOpenAIUpstream` as the large tier (through
  litellm, as a hosted model would be), whose behaviour a fault can change while it runs;
* :class:`~deployments.runtime.LocalGateway`: Ray, Serve, the ingress and the vLLM CPU
  engine with SmolLM2-135M, exactly the path ``slm-router serve`` takes.

Start-up takes about a minute (the vLLM engine). Only one Ray stack may run on a shared
machine at a time: run the faults under ``flock /tmp/slm-ray.lock``.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from deployments.runtime import LocalGateway
from gateway.config import GatewayConfig, load_config
from gateway.redis_server import EmbeddedRedis
from loadtest.faults.target import RedisProcess
from tests.fakes.openai_upstream import FakeOpenAIUpstream, UpstreamBehaviour

__all__ = ["LARGE_MODEL", "SMALL_MODEL", "FaultStack", "StackOptions", "fault_config", "free_port"]

#: Served model names of the two tiers.
SMALL_MODEL = "smollm2-135m-instruct"
LARGE_MODEL = "fake-large"
#: Variable litellm reads the fake upstream's (ignored) key from.
UPSTREAM_KEY_ENV = "SLM_TEST_UPSTREAM_KEY"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class StackOptions:
    """Knobs of the fault stack (defaults keep a 2-core machine responsive)."""

    #: Two ingress replicas let one be killed while the other serves (see kill_replica).
    ingress_replicas: int = 2
    #: Router threshold: of :data:`loadtest.faults.load.PROMPTS`, the five HARD_PROMPTS go large.
    threshold: float = 0.56
    #: Small-model completions are capped low: a shared 2-core CPU generates tens of tokens/s in all.
    small_max_tokens: int = 16
    #: The local profile's value: how long a request may wait for the small model.
    small_timeout_s: float = 120.0
    large_timeout_s: float = 10.0
    large_num_retries: int = 1
    upstream_latency_s: float = 0.05
    ready_timeout_s: float = 600.0


def fault_config(upstream_url: str, redis_url: str, port: int, options: StackOptions) -> GatewayConfig:
    """The local profile with two tiers: vLLM small, and large through litellm to ``upstream_url``."""
    data: dict[str, Any] = load_config(None, environ={}).model_dump(mode="json")
    data["server"]["port"] = port
    data["redis"]["url"] = redis_url
    small = data["tiers"]["small"]
    small.update(max_model_len=1024, default_max_tokens=options.small_max_tokens, timeout_s=options.small_timeout_s)
    data["tiers"] = {
        "small": small,
        "large": {
            "kind": "litellm",
            "served_model_name": LARGE_MODEL,
            "model": f"openai/{LARGE_MODEL}",
            "api_base": upstream_url,
            "api_key_env": UPSTREAM_KEY_ENV,
            "timeout_s": options.large_timeout_s,
            "num_retries": options.large_num_retries,
            "retry_backoff_s": 0.25,
            "default_max_tokens": 32,
        },
    }
    data["accounting"]["prices"] = {
        "small": {"kind": "gpu_hour", "gpu_hour_usd": 2.4, "tokens_per_second": 2000, "utilization": 0.5},
        "large": {"kind": "litellm", "model": "gpt-4o"},
    }
    data["routing"]["threshold"] = options.threshold
    data["routing"]["thresholds"] = None
    data["ingress"]["num_replicas"] = options.ingress_replicas
    return GatewayConfig.model_validate(data)


class FaultStack:
    """Starts and stops the whole stack; also kills and restarts its Redis on demand."""

    def __init__(self, options: StackOptions | None = None) -> None:
        self.options = options or StackOptions()
        self._workdir: Path | None = None
        self._redis: RedisProcess | None = None
        self._upstream: FakeOpenAIUpstream | None = None
        self._gateway: LocalGateway | None = None

    # -- start / stop -----------------------------------------------------------------

    def start(self) -> FaultStack:
        """Start Redis, the fake upstream and the gateway; returns once ``/health/ready`` is 200."""
        os.environ.setdefault(UPSTREAM_KEY_ENV, "sk-fake-not-a-secret")
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self._workdir = Path(tempfile.mkdtemp(prefix="slm-faults-"))
        try:
            server = EmbeddedRedis(self.redis_dir, port=free_port(), persist=True)
            self._redis = RedisProcess(server.start(), self.redis_dir, owned=server)
            behaviour = UpstreamBehaviour(model=LARGE_MODEL, latency_s=self.options.upstream_latency_s)
            self._upstream = FakeOpenAIUpstream(behaviour).start()
            config = fault_config(self._upstream.base_url, self._redis.url, free_port(), self.options)
            self._init_ray()
            self._gateway = LocalGateway(config, num_cpus=4, ready_timeout_s=self.options.ready_timeout_s)
            self._gateway.start()
        except BaseException:
            self.stop()
            raise
        return self

    @staticmethod
    def _init_ray() -> None:
        import ray

        if not ray.is_initialized():
            # Started here rather than by LocalGateway only to keep replica logs out of the
            # fault's report (they stay in Ray's session log folder).
            ray.init(
                num_cpus=4,
                include_dashboard=False,
                configure_logging=True,
                logging_level=logging.WARNING,
                log_to_driver=False,
            )

    def stop(self) -> None:
        """Tear everything down; safe to call twice and after a failed start."""
        gateway, self._gateway = self._gateway, None
        try:
            if gateway is not None:
                gateway.stop()
        finally:
            import ray

            if ray.is_initialized():
                ray.shutdown()
            if self._upstream is not None:
                self._upstream.stop()
                self._upstream = None
            if self._redis is not None:
                self._redis.stop()
                self._redis = None
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None

    def __enter__(self) -> FaultStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- what faults need ---------------------------------------------------------------

    @property
    def gateway(self) -> LocalGateway:
        """The running gateway."""
        if self._gateway is None:
            raise RuntimeError("the stack is not running")
        return self._gateway

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` of Serve's HTTP proxy."""
        return self.gateway.base_url

    @property
    def config(self) -> GatewayConfig:
        """The gateway's effective config."""
        return self.gateway.config

    @property
    def upstream(self) -> UpstreamBehaviour:
        """The fake large upstream's behaviour (mutable: latency, fail_status, hang)."""
        if self._upstream is None:
            raise RuntimeError("the stack is not running")
        return self._upstream.behaviour

    def reset_upstream(self) -> None:
        """Healthy upstream again, with the stack's latency."""
        behaviour = self.upstream
        behaviour.fail_status = None
        behaviour.hang = False
        behaviour.latency_s = self.options.upstream_latency_s
        behaviour.requests.clear()
        behaviour.headers_seen.clear()

    @property
    def redis(self) -> RedisProcess:
        """Kill and restart control over the stack's Redis."""
        if self._redis is None:
            raise RuntimeError("the stack is not running")
        return self._redis

    @property
    def redis_dir(self) -> Path:
        """Redis's data folder (AOF and RDB files)."""
        if self._workdir is None:
            raise RuntimeError("the stack is not running")
        return self._workdir / "redis"
