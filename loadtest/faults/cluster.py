"""What the faults look at and kill inside the local Ray cluster: replica actors and processes.

Replica actors are found in Ray's actor table by class name (Serve names the class of a
replica ``ServeReplica:<app>:<deployment>``). ``ray.util.state.list_actors`` would give the
same, but it asks the dashboard's state API, and ``LocalGateway`` starts Ray without the
dashboard (ports, CPU); the GCS actor table behind it answers without one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from typing import Any

import psutil

from deployments.app_builder import INGRESS_NAME, model_deployment_name
from deployments.runtime import APP_NAME

__all__ = [
    "INGRESS",
    "SMALL",
    "ReplicaActor",
    "engine_core_pids",
    "engine_cores_of",
    "engine_stats",
    "kill",
    "replica_actors",
    "replica_states",
    "tree_rss",
    "wait_for",
]

#: Serve deployment names of the ingress and of the small model.
INGRESS = INGRESS_NAME
SMALL = model_deployment_name("small")


@dataclass(frozen=True)
class ReplicaActor:
    """A live replica actor: its Ray actor id, Serve name and worker process id."""

    actor_id: str
    name: str
    pid: int


def replica_actors(deployment: str) -> list[ReplicaActor]:
    """The ALIVE replica actors of ``deployment`` in the slm-router application."""
    from ray._private import state

    class_name = f"ServeReplica:{APP_NAME}:{deployment}"
    table: dict[str, dict[str, Any]] = state.actors(actor_state_name="ALIVE")
    return [
        ReplicaActor(actor_id, str(info["Name"]), int(info["Pid"]))
        for actor_id, info in table.items()
        if info["ActorClassName"] == class_name and info["Pid"]
    ]


def replica_states(deployment: str) -> dict[str, int]:
    """Replica counts by state (``RUNNING``, ``STARTING``, ...) as Serve's controller reports them."""
    from ray import serve

    app = serve.status().applications.get(APP_NAME)
    if app is None or deployment not in app.deployments:
        return {}
    return {str(state): int(count) for state, count in app.deployments[deployment].replica_states.items()}


def kill(pid: int) -> None:
    """SIGKILL a process: no shutdown hook runs, as in an OOM kill or a node failure."""
    os.kill(pid, signal.SIGKILL)


def _tree(pid: int) -> list[psutil.Process]:
    """``pid``'s process and all its descendants (empty if it is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes (0 if it is gone)."""
    total = 0
    for process in _tree(pid):
        with contextlib.suppress(psutil.Error):
            total += int(process.memory_info().rss)
    return total


def engine_core_pids() -> list[int]:
    """Pids of vLLM engine-core processes on this machine (vLLM titles them ``VLLM::EngineCore``)."""
    pids = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = process.info.get("cmdline") or []
        if cmdline and "EngineCore" in cmdline[0]:
            pids.append(int(process.info["pid"]))
    return pids


def engine_cores_of(pid: int) -> list[int]:
    """The engine-core processes among ``pid``'s descendants (a small-model replica's own engine)."""
    descendants = {p.pid for p in _tree(pid)[1:]}
    return [core for core in engine_core_pids() if core in descendants]


def process_tree(pid: int) -> list[str]:
    """``pid`` and its descendants as ``"pid name"`` lines (for error messages)."""
    lines = []
    for process in _tree(pid):
        with contextlib.suppress(psutil.Error):
            lines.append(f"{process.pid} {process.name()}")
    return lines or [f"{pid}: gone"]


async def engine_stats() -> dict[str, Any]:
    """The small model's engine counters (see ``SmallModelDeployment.engine_stats``)."""
    from ray import serve

    handle = serve.get_deployment_handle(SMALL, app_name=APP_NAME)
    stats: dict[str, Any] = await handle.engine_stats.remote()
    return stats


def wait_for(predicate: Any, timeout_s: float, interval_s: float = 0.5) -> float | None:
    """Poll ``predicate()`` until true; seconds it took, or ``None`` on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        with contextlib.suppress(Exception):
            if predicate():
                return time.monotonic() - start
        time.sleep(interval_s)
    return None
