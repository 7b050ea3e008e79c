"""Every rendered manifest validates against its schema.

Built-in kinds: the Kubernetes OpenAPI schemas bundled with ``kubernetes_validate``, in
strict mode (unknown fields are errors, as with ``kubectl apply --validate=strict``), for
the oldest and newest Kubernetes minor we support. Custom resources: the CRD schemas kept
in ``k8s/schemas/`` (hand-authored subsets, see their ``description``), with the pod
templates and Services they embed validated against the Kubernetes schemas too.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.unit.k8s.manifests import K8S, RenderedOverlay

#: Oldest and newest Kubernetes minors the manifests must be valid for.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")

#: apiVersion/kind of each custom resource -> its CRD schema in k8s/schemas/.
CRD_SCHEMAS: dict[tuple[str, str], str] = {
    ("ray.io/v1", "RayService"): "rayservice.ray.io_v1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.monitoring.coreos.com_v1.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor.monitoring.coreos.com_v1.json",
}


@cache
def crd_validator(file_name: str) -> jsonschema.protocols.Validator:
    """A validator for one CRD schema file (checked to be a valid schema itself)."""
    schema = json.loads((K8S / "schemas" / file_name).read_text(encoding="utf-8"))
    validator_cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    validator_cls.check_schema(schema)
    validator: jsonschema.protocols.Validator = validator_cls(schema)
    return validator


def crd_errors(resource: dict[str, Any]) -> list[str]:
    """Schema violations of a custom resource, one line each with its path."""
    file_name = CRD_SCHEMAS[(resource["apiVersion"], resource["kind"])]
    errors = crd_validator(file_name).iter_errors(resource)
    return [f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in errors]


def validate_builtin(resource: dict[str, Any], version: str) -> None:
    """Validate with kubernetes_validate, turning its error into a readable assertion."""
    try:
        kubernetes_validate.validate(resource, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = "/".join(str(p) for p in exc.path)
        name = f"{resource['kind']}/{resource['metadata']['name']}"
        raise AssertionError(f"{name} at {path}: {exc.message} (Kubernetes {version})") from None


def embedded_objects(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """Core objects a RayService embeds, wrapped as standalone resources for validation."""
    spec = resource["spec"]
    cluster = spec["rayClusterConfig"]
    groups = [("head", cluster["headGroupSpec"])] + [(g["groupName"], g) for g in cluster.get("workerGroupSpecs", [])]
    wrapped: list[dict[str, Any]] = []
    for name, group in groups:
        # A pod template is a core/v1 PodTemplateSpec: the PodTemplate kind wraps exactly that.
        wrapped.append(
            {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name}, "template": group["template"]}
        )
        if "headService" in group:
            wrapped.append({"apiVersion": "v1", "kind": "Service", **group["headService"]})
    if "serveService" in spec:
        wrapped.append({"apiVersion": "v1", "kind": "Service", **spec["serveService"]})
    return wrapped


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_builtin_kinds_validate_against_kubernetes_schemas(overlay: RenderedOverlay, version: str) -> None:
    checked = 0
    for resource in overlay.resources:
        if (resource["apiVersion"], resource["kind"]) in CRD_SCHEMAS:
            for embedded in embedded_objects(resource) if resource["kind"] == "RayService" else []:
                validate_builtin(embedded, version)
                checked += 1
            continue
        validate_builtin(resource, version)
        checked += 1
    assert checked >= 8, "suspiciously few resources were validated"


def test_every_kind_has_a_schema(overlay: RenderedOverlay) -> None:
    """A new custom resource kind must come with its CRD schema in k8s/schemas/."""
    for resource in overlay.resources:
        key = (resource["apiVersion"], resource["kind"])
        if key in CRD_SCHEMAS:
            continue
        # kubernetes_validate raises SchemaNotFoundError for kinds it does not know.
        try:
            kubernetes_validate.validate(resource, KUBERNETES_VERSIONS[-1], strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{key} is neither a Kubernetes kind nor in CRD_SCHEMAS")


def test_custom_resources_validate_against_crd_schemas(overlay: RenderedOverlay) -> None:
    kinds = set()
    for resource in overlay.resources:
        if (resource["apiVersion"], resource["kind"]) in CRD_SCHEMAS:
            assert crd_errors(resource) == [], f"{resource['kind']}/{resource['metadata']['name']}"
            kinds.add(resource["kind"])
    assert kinds == {"RayService", "ServiceMonitor", "PodMonitor"}


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        # A misspelled field is an error, as on the API server with strict validation.
        (lambda s: s["spec"].__setitem__("serveConfig", "x"), "Additional properties"),
        (lambda s: s["spec"]["rayClusterConfig"]["headGroupSpec"].__setitem__("rayStartParam", {}), "Additional"),
        # rayStartParams is map[string]string: an unquoted number is rejected by the API server.
        (lambda s: s["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"].__setitem__("num-cpus", 0), "not"),
        (lambda s: s["spec"]["rayClusterConfig"]["workerGroupSpecs"][0].pop("groupName"), "required"),
        (lambda s: s["spec"]["rayClusterConfig"].pop("headGroupSpec"), "required"),
        (lambda s: s["spec"]["upgradeStrategy"].__setitem__("type", "Rolling"), "is not one of"),
    ],
)
def test_rayservice_schema_rejects_mistakes(gpu_prod: RenderedOverlay, mutate: Any, expected: str) -> None:
    """The hand-authored CRD subset is strict enough to catch typical manifest mistakes."""
    broken = copy.deepcopy(gpu_prod.rayservice)
    mutate(broken)
    errors = crd_errors(broken)
    assert errors and any(expected in e for e in errors), errors


def test_crd_schema_files_say_they_are_subsets() -> None:
    for file_name in CRD_SCHEMAS.values():
        schema = json.loads((K8S / "schemas" / file_name).read_text(encoding="utf-8"))
        assert "HAND-AUTHORED SUBSET" in schema["description"], file_name
    assert sorted(p.name for p in Path(K8S / "schemas").glob("*.json")) == sorted(CRD_SCHEMAS.values())
