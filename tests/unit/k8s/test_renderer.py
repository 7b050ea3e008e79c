"""The pure-Python kustomize renderer: its semantics, its refusals, and real kustomize parity."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.unit.k8s.kustomize_lite import KustomizeError, apply_json6902, render, resource_id
from tests.unit.k8s.manifests import K8S, OVERLAYS


def write(folder: Path, files: dict[str, str]) -> Path:
    """Create ``files`` (relative path -> text) under ``folder``."""
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return folder


BASE = {
    "base/kustomization.yaml": """
        resources: [deploy.yaml]
        namespace: demo
        generatorOptions: {disableNameSuffixHash: true}
        configMapGenerator:
          - name: settings
            literals: [A=1]
    """,
    "base/deploy.yaml": """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          template:
            spec:
              initContainers: [{name: init, image: "example/app:1"}]
              containers:
                - {name: app, image: "example/app:1", env: [{name: X, value: "1"}]}
                - {name: side, image: "registry:5000/other"}
        ---
        apiVersion: v1
        kind: Namespace
        metadata: {name: demo}
    """,
}


def test_overlay_patches_generators_namespace_and_images(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            **BASE,
            "overlay/kustomization.yaml": """
                resources: [../base]
                namespace: demo
                generatorOptions: {disableNameSuffixHash: true}
                configMapGenerator:
                  - {name: settings, behavior: merge, envs: [extra.env]}
                  - {name: files, files: [key.txt=data/file.txt, data/other.txt]}
                patches:
                  - target: {group: apps, version: v1, kind: Deployment, name: web}
                    patch: |-
                      - {op: test, path: /spec/template/spec/containers/0/name, value: app}
                      - {op: add, path: /spec/template/spec/containers/0/env/-, value: {name: Y, value: "2"}}
                      - {op: replace, path: /spec/template/spec/containers/1/image, value: "registry:5000/other:9"}
                  - patch: |-
                      apiVersion: apps/v1
                      kind: Deployment
                      metadata: {name: web, labels: {tier: front}}
                images:
                  - {name: example/app, newName: mirror.local/app, newTag: "2"}
            """,
            "overlay/extra.env": "# comment\nB=two=2\n\n",
            "overlay/data/file.txt": "hello\n",
            "overlay/data/other.txt": "world\n",
        },
    )
    resources = {(r["kind"], r["metadata"]["name"]): r for r in render(root / "overlay")}
    deploy = resources[("Deployment", "web")]
    assert deploy["metadata"] == {"name": "web", "labels": {"tier": "front"}, "namespace": "demo"}
    pod = deploy["spec"]["template"]["spec"]
    assert [c["image"] for c in pod["containers"]] == ["mirror.local/app:2", "registry:5000/other:9"]
    assert pod["initContainers"][0]["image"] == "mirror.local/app:2"
    assert pod["containers"][0]["env"] == [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]
    assert resources[("ConfigMap", "settings")]["data"] == {"A": "1", "B": "two=2"}
    assert resources[("ConfigMap", "files")]["data"] == {"key.txt": "hello\n", "other.txt": "world\n"}
    # Cluster-scoped kinds get no namespace.
    assert "namespace" not in resources[("Namespace", "demo")]["metadata"]


def test_strategic_merge_delete_removes_the_resource(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            **BASE,
            "overlay/kustomization.yaml": """
                resources: [../base]
                patches:
                  - patch: |-
                      $patch: delete
                      apiVersion: apps/v1
                      kind: Deployment
                      metadata: {name: web}
            """,
        },
    )
    assert [r["kind"] for r in render(root / "overlay")] == ["Namespace", "ConfigMap"]


@pytest.mark.parametrize(
    ("kustomization", "message"),
    [
        ("resources: [../base]\nnamePrefix: x-\n", "unsupported fields"),
        ("resources: [../base]\nconfigMapGenerator: [{name: c, literals: [A=1]}]\n", "hashing is not implemented"),
        (
            "resources: [../base]\npatches:\n  - patch: |-\n      apiVersion: apps/v1\n      kind: Deployment\n"
            "      metadata: {name: web}\n      spec: {template: {spec: {containers: []}}}\n",
            "lists in strategic-merge patches",
        ),
        (
            "resources: [../base]\npatches:\n  - target: {kind: Deployment}\n    patch: |-\n"
            "      - {op: test, path: /spec/template/spec/containers/0/name, value: nope}\n",
            "test failed",
        ),
        (
            "resources: [../base]\npatches:\n  - target: {kind: Service}\n    patch: |-\n"
            "      - {op: remove, path: /spec}\n",
            "matches no resource",
        ),
        (
            "resources: [../base]\nconfigMapGenerator: [{name: c, files: [../base/deploy.yaml]}]\n"
            "generatorOptions: {disableNameSuffixHash: true}\n",
            "outside the kustomization root",
        ),
        (
            "resources: [../base]\ngeneratorOptions: {disableNameSuffixHash: true}\n"
            "configMapGenerator: [{name: settings, literals: [B=2]}]\n",
            "already exists",
        ),
    ],
)
def test_unsupported_or_invalid_kustomizations_are_refused(tmp_path: Path, kustomization: str, message: str) -> None:
    root = write(tmp_path, {**BASE, "overlay/kustomization.yaml": kustomization})
    with pytest.raises(KustomizeError, match=message):
        render(root / "overlay")


def test_json6902_pointer_escapes_and_list_bounds() -> None:
    doc = {"metadata": {"labels": {"a/b": "1", "c~d": "2"}}, "items": [1, 2]}
    out = apply_json6902(
        doc,
        [
            {"op": "replace", "path": "/metadata/labels/a~1b", "value": "x"},
            {"op": "remove", "path": "/metadata/labels/c~0d"},
            {"op": "add", "path": "/items/0", "value": 0},
            {"op": "test", "path": "/items", "value": [0, 1, 2]},
        ],
    )
    assert out == {"metadata": {"labels": {"a/b": "x"}}, "items": [0, 1, 2]}
    assert doc["items"] == [1, 2], "the input is not modified"
    with pytest.raises(KustomizeError, match="out of range"):
        apply_json6902(doc, [{"op": "replace", "path": "/items/2", "value": 9}])
    with pytest.raises(KustomizeError, match="not implemented"):
        apply_json6902(doc, [{"op": "move", "from": "/items/0", "path": "/items/1"}])


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with built-in kustomize) is not installed")
@pytest.mark.parametrize("overlay_name", OVERLAYS)
def test_renderer_matches_real_kustomize(overlay_name: str) -> None:
    """Where kubectl exists, its kustomize and this renderer must produce the same objects."""
    folder = K8S / "overlays" / overlay_name
    try:
        result = subprocess.run(
            ["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:  # a broken kubectl install is not a manifest bug
        pytest.skip(f"kubectl kustomize unavailable: {exc}")
    if result.returncode != 0 and "unknown command" in result.stderr:
        pytest.skip("this kubectl has no kustomize")
    assert result.returncode == 0, result.stderr
    real = {resource_id(r): r for r in yaml.safe_load_all(result.stdout) if r}
    ours = {resource_id(r): r for r in render(folder)}
    assert set(ours) == set(real)
    for rid, resource in ours.items():
        assert resource == real[rid], f"{overlay_name}: {rid} differs from kubectl kustomize"
