"""Read-only views of a rendered overlay: the RayService, its pods, their environment.

The tests ask questions of the manifests ("what does the head container see in its
environment?", "which GPU groups are there?") through these helpers, so each test
states a rule rather than a walk through nested YAML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from tests.unit.k8s.kustomize_lite import Resource, render

__all__ = [
    "GPU_RESOURCE",
    "K8S",
    "OVERLAYS",
    "REPO",
    "RayContainer",
    "RayGroup",
    "RenderedOverlay",
    "cpu_quantity",
    "load_overlay",
]

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "k8s"
#: Every deployable profile. A new overlay must be added here to be checked.
OVERLAYS = ("cpu-local", "gpu-prod")
GPU_RESOURCE = "nvidia.com/gpu"


def cpu_quantity(value: str | int | float) -> float:
    """A Kubernetes CPU quantity (``"500m"``, ``"2"``, ``4``) in cores."""
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


@dataclass(frozen=True)
class RayContainer:
    """The Ray container (the first one) of a head or worker pod template."""

    group: str
    spec: dict[str, Any]

    @property
    def env_entries(self) -> list[dict[str, Any]]:
        """``env`` as written."""
        return list(self.spec.get("env") or [])

    def secret_refs(self) -> dict[str, tuple[str, str, bool]]:
        """Variable name -> (secret name, key, optional) for every ``secretKeyRef``."""
        refs: dict[str, tuple[str, str, bool]] = {}
        for entry in self.env_entries:
            ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                refs[entry["name"]] = (ref["name"], ref["key"], bool(ref.get("optional", False)))
        return refs


@dataclass(frozen=True)
class RayGroup:
    """The head group or one worker group of the RayService."""

    name: str
    spec: dict[str, Any]
    is_head: bool

    @property
    def template(self) -> dict[str, Any]:
        """The pod template."""
        template: dict[str, Any] = self.spec["template"]
        return template

    @property
    def pod_spec(self) -> dict[str, Any]:
        """The pod template's spec."""
        spec: dict[str, Any] = self.template["spec"]
        return spec

    @property
    def ray_container(self) -> RayContainer:
        """The Ray container; KubeRay treats the first container as Ray's."""
        return RayContainer(self.name, self.pod_spec["containers"][0])

    @property
    def start_params(self) -> dict[str, str]:
        """``rayStartParams``."""
        return dict(self.spec.get("rayStartParams") or {})

    @property
    def logical_cpus(self) -> float:
        """CPUs this pod offers to Ray's scheduler (``num-cpus``, which every group sets)."""
        return float(self.start_params["num-cpus"])

    @property
    def gpus(self) -> int:
        """GPUs of one pod (KubeRay derives ``num-gpus`` from the container's GPU limit)."""
        limits = self.ray_container.spec.get("resources", {}).get("limits", {})
        return int(limits.get(GPU_RESOURCE, 0))

    @property
    def max_pods(self) -> int:
        """Largest number of pods (the head is one)."""
        return 1 if self.is_head else int(self.spec["maxReplicas"])


@dataclass(frozen=True)
class RenderedOverlay:
    """One overlay rendered with :func:`~tests.unit.k8s.kustomize_lite.render`."""

    name: str
    resources: tuple[Resource, ...]

    def of_kind(self, kind: str) -> list[Resource]:
        """Every resource of ``kind``."""
        return [r for r in self.resources if r["kind"] == kind]

    def get(self, kind: str, name: str) -> Resource | None:
        """The resource of ``kind`` named ``name``, if rendered."""
        for resource in self.of_kind(kind):
            if resource["metadata"]["name"] == name:
                return resource
        return None

    def one(self, kind: str, name: str) -> Resource:
        """The resource of ``kind`` named ``name``; fails the test when absent."""
        resource = self.get(kind, name)
        assert resource is not None, f"{self.name}: no {kind} {name}"
        return resource

    @property
    def rayservice(self) -> Resource:
        """The single RayService."""
        services = self.of_kind("RayService")
        assert len(services) == 1, f"{self.name}: expected one RayService, got {len(services)}"
        return services[0]

    @cached_property
    def serve_config(self) -> dict[str, Any]:
        """``serveConfigV2`` parsed."""
        parsed: dict[str, Any] = yaml.safe_load(self.rayservice["spec"]["serveConfigV2"])
        return parsed

    @property
    def groups(self) -> list[RayGroup]:
        """Head group first, then the worker groups."""
        cluster = self.rayservice["spec"]["rayClusterConfig"]
        groups = [RayGroup("head", cluster["headGroupSpec"], is_head=True)]
        groups += [RayGroup(g["groupName"], g, is_head=False) for g in cluster.get("workerGroupSpecs") or []]
        return groups

    @property
    def workers(self) -> list[RayGroup]:
        """The worker groups."""
        return [g for g in self.groups if not g.is_head]

    def config_map_data(self, name: str) -> dict[str, str]:
        """``data`` of a rendered ConfigMap."""
        data: dict[str, str] = self.one("ConfigMap", name).get("data") or {}
        return data

    def container_environment(self, container: dict[str, Any]) -> dict[str, str]:
        """What the process in ``container`` sees, as far as the manifests decide it.

        ``envFrom`` ConfigMaps first, then ``env`` in order with ``$(VAR)`` expansion, as
        the kubelet does. Secret values are not in the repository: a ``secretKeyRef``
        becomes the placeholder ``secret:<name>/<key>``; a ``fieldRef`` becomes
        ``field:<path>``.
        """
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            ref = source.get("configMapRef")
            assert ref, f"{self.name}: only configMapRef envFrom is expected, got {source}"
            env.update(self.config_map_data(ref["name"]))
        for entry in container.get("env") or []:
            if "value" in entry:
                value = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), str(entry["value"]))
            else:
                source = entry["valueFrom"]
                if "secretKeyRef" in source:
                    value = f"secret:{source['secretKeyRef']['name']}/{source['secretKeyRef']['key']}"
                elif "fieldRef" in source:
                    value = f"field:{source['fieldRef']['fieldPath']}"
                elif "configMapKeyRef" in source:
                    ref = source["configMapKeyRef"]
                    value = self.config_map_data(ref["name"])[ref["key"]]
                else:
                    raise AssertionError(f"{self.name}: unexpected valueFrom {source}")
            env[entry["name"]] = value
        return env


def load_overlay(name: str) -> RenderedOverlay:
    """Render ``k8s/overlays/<name>``."""
    return RenderedOverlay(name, tuple(render(K8S / "overlays" / name)))
