"""Start and stop the systems a benchmark compares, each in its own process group.

Every system runs as its own OS process(es) on loopback, like a user would run it, so the
benchmark's driver (the load generator) never shares an interpreter with what it measures.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ManagedProcess", "free_port", "gateway_process", "litellm_proxy_process", "repo_root", "upstream_process"]


def repo_root() -> Path:
    """The checkout this file lives in."""
    return Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, headers: dict[str, str] | None = None, timeout: float = 2.0) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, TimeoutError):
        return -1


@dataclass
class ManagedProcess:
    """A child process group with a readiness URL and a log file."""

    name: str
    argv: list[str]
    ready_url: str
    base_url: str = ""
    #: The status that means ready; ``None``: any HTTP answer.
    ready_status: int | None = 200
    env: dict[str, str] = field(default_factory=dict)
    ready_headers: dict[str, str] = field(default_factory=dict)
    ready_timeout_s: float = 240.0
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    started_s: float = 0.0
    _began: float = 0.0

    def spawn(self) -> ManagedProcess:
        """Start the process without waiting for readiness."""
        log = tempfile.NamedTemporaryFile(prefix=f"bench-{self.name}-", suffix=".log", delete=False)  # noqa: SIM115
        self.log_path = Path(log.name)
        self._began = time.perf_counter()
        self.process = subprocess.Popen(
            self.argv,
            cwd=repo_root(),
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def start(self) -> ManagedProcess:
        """Spawn and wait until ``ready_url`` answers; raise with the log tail otherwise."""
        self.spawn()
        assert self.process is not None
        deadline = time.monotonic() + self.ready_timeout_s
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not become ready; log tail:\n{self.log_tail()}")
            time.sleep(0.25)
        self.started_s = time.perf_counter() - self._began
        return self

    def _ready(self) -> bool:
        status = _get(self.ready_url, self.ready_headers)
        return status != -1 if self.ready_status is None else status == self.ready_status

    def log_tail(self, lines: int = 40) -> str:
        """The last lines the process wrote."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, grace_s: float = 60.0) -> None:
        """SIGINT the group, wait, then SIGKILL what is left."""
        if self.process is None or self.process.poll() is not None:
            return
        pgid = os.getpgid(self.process.pid)
        os.killpg(pgid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=grace_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        self.process.wait(timeout=10)


def upstream_process(latency_ms: float, port: int | None = None) -> ManagedProcess:
    """The fixed-latency OpenAI-compatible upstream; ``base_url`` ends in ``/v1``."""
    port = port or free_port()
    argv = [sys.executable, "-m", "benchmarks.fixed_latency_upstream", "--port", str(port)]
    argv += ["--latency-ms", str(latency_ms)]
    # aiohttp answers 404 on "/": any HTTP answer means it listens.
    return ManagedProcess(
        "upstream", argv, f"http://127.0.0.1:{port}/", base_url=f"http://127.0.0.1:{port}/v1", ready_status=None
    )


def gateway_process(
    tiers: dict[str, Any],
    *,
    name: str = "slm-router",
    routing: dict[str, Any] | None = None,
    ingress: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    prices: dict[str, Any] | None = None,
) -> ManagedProcess:
    """``slm-router serve`` with the default config, these tiers and a fresh state folder."""
    sys.path.insert(0, str(repo_root()))
    from gateway.config import GatewayConfig, load_config

    data = load_config(None, environ={}).model_dump(mode="json")
    port = free_port()
    state = Path(tempfile.mkdtemp(prefix="bench-state-"))
    data["server"]["port"] = port
    data["redis"]["state_dir"] = str(state / "redis")
    data["tiers"] = tiers
    data["routing"] = {**data["routing"], **(routing or {})}
    data["accounting"]["prices"] = prices or {name: {"kind": "litellm", "model": "gpt-4o"} for name in tiers}
    if ingress:
        data["ingress"] = {**data["ingress"], **ingress}
    config_path = state / "config.yaml"
    config_path.write_text(yaml.safe_dump(GatewayConfig.model_validate(data).model_dump(mode="json")))
    exe = str(Path(sys.executable).with_name("slm-router"))
    return ManagedProcess(
        name,
        [exe, "serve", "--config", str(config_path)],
        f"http://127.0.0.1:{port}/health/ready",
        base_url=f"http://127.0.0.1:{port}",
        env={"RAY_SERVE_ENABLE_HA_PROXY": "0", **(env or {})},
    )


def litellm_proxy_process(
    upstream_base_url: str, model: str, *, workers: int = 1, master_key: str = "sk-bench-master-key"
) -> ManagedProcess:
    """LiteLLM's proxy (its own venv, see ``litellm_proxy_env.sh``) forwarding ``model`` to the upstream."""
    exe = subprocess.run(
        ["bash", str(repo_root() / "benchmarks" / "litellm_proxy_env.sh")], check=True, capture_output=True, text=True
    ).stdout.strip()
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="bench-litellm-"))
    config = {
        "model_list": [
            {
                "model_name": model,
                "litellm_params": {"model": f"openai/{model}", "api_base": upstream_base_url, "api_key": "sk-up"},
            }
        ],
        "litellm_settings": {"telemetry": False},
    }
    (folder / "config.yaml").write_text(json.dumps(config))
    argv = [str(repo_root() / exe), "--config", str(folder / "config.yaml"), "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--num_workers", str(workers)]
    return ManagedProcess(
        f"litellm-proxy-{workers}w",
        argv,
        f"http://127.0.0.1:{port}/health/liveliness",
        base_url=f"http://127.0.0.1:{port}",
        env={"LITELLM_MASTER_KEY": master_key, "LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )
