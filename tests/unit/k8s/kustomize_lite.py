"""A small, pure-Python kustomize: enough of it to render ``k8s/overlays/*`` in CI.

CI has no ``kubectl``/``kustomize`` binary, yet the manifests must be validated as they
will be applied. This renders exactly the kustomization features the repository uses
and *refuses* everything else with :class:`KustomizeError`, so a manifest can never
silently render differently here than under ``kubectl apply -k``:

* ``resources``: YAML files (inside the kustomization root) and kustomization folders;
* ``configMapGenerator`` (``files``, ``literals``, ``envs``; behaviours ``create``,
  ``merge``, ``replace``) with ``disableNameSuffixHash: true`` only: name hashing is
  not implemented, and the repository disables it on purpose;
* ``patches``: JSON6902 lists (``add``, ``remove``, ``replace``, ``test``) on a
  ``target``, and strategic-merge patches limited to whole-resource ``$patch: delete``
  and map merges (lists are refused: kustomize merges some lists by key, which this
  renderer does not model);
* ``namespace`` and ``images`` (kustomize's legacy image filter, which rewrites
  ``containers[]``/``initContainers[]`` images anywhere, custom resources included).

Where ``kubectl`` exists, ``tests/unit/k8s/test_renderer.py`` compares this output
with ``kubectl kustomize``. Run ``python -m tests.unit.k8s.kustomize_lite DIR`` to
print a rendering.
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "CLUSTER_SCOPED_KINDS",
    "KustomizeError",
    "Resource",
    "apply_json6902",
    "iter_images",
    "render",
    "resource_id",
]

#: One Kubernetes object as parsed from YAML.
Resource = dict[str, Any]

#: Kinds the namespace transformer leaves alone (the ones this project could plausibly use).
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
        "IngressClass",
        "RuntimeClass",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    }
)

_KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_SUPPORTED_FIELDS = frozenset(
    {"apiVersion", "kind", "namespace", "resources", "generatorOptions", "configMapGenerator", "patches", "images"}
)
_SUPPORTED_GENERATOR_FIELDS = frozenset({"name", "behavior", "files", "literals", "envs", "options"})
_SUPPORTED_OPTION_FIELDS = frozenset({"disableNameSuffixHash", "labels", "annotations"})
_SUPPORTED_TARGET_FIELDS = frozenset({"group", "version", "kind", "name", "namespace"})
_SUPPORTED_IMAGE_FIELDS = frozenset({"name", "newName", "newTag", "digest"})
#: Marks an absent member in a JSON6902 ``test`` (``None`` is a legitimate value).
_MISSING = object()


class KustomizeError(ValueError):
    """The kustomization is invalid, or uses a feature this renderer does not implement."""


def resource_id(resource: Resource) -> tuple[str, str, str, str]:
    """``(apiVersion, kind, namespace, name)``: how resources are told apart."""
    meta = resource.get("metadata") or {}
    return (
        str(resource.get("apiVersion", "")),
        str(resource.get("kind", "")),
        str(meta.get("namespace", "")),
        str(meta.get("name", "")),
    )


def render(path: str | Path) -> list[Resource]:
    """Render the kustomization in folder ``path`` into a list of resources."""
    return _build(Path(path).resolve(), stack=())


# ---------------------------------------------------------------------------- loading


def _inside(root: Path, relative: str, what: str) -> Path:
    # kustomize's load restrictor: files a kustomization reads must live under its root.
    target = (root / relative).resolve()
    if not target.is_relative_to(root):
        raise KustomizeError(f"{root}: {what} {relative!r} is outside the kustomization root")
    return target


def _load_kustomization(root: Path) -> dict[str, Any]:
    for name in _KUSTOMIZATION_FILES:
        candidate = root / name
        if candidate.is_file():
            data = yaml.safe_load(candidate.read_text(encoding="utf-8")) or {}
            if not isinstance(data, dict):
                raise KustomizeError(f"{candidate}: not a mapping")
            unknown = set(data) - _SUPPORTED_FIELDS
            if unknown:
                raise KustomizeError(f"{candidate}: unsupported fields {sorted(unknown)}")
            if data.get("kind", "Kustomization") != "Kustomization":
                raise KustomizeError(f"{candidate}: kind must be Kustomization")
            return data
    raise KustomizeError(f"{root}: no kustomization file")


def _load_documents(path: Path) -> list[Resource]:
    docs = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]
    for doc in docs:
        if not isinstance(doc, dict) or not doc.get("kind") or not (doc.get("metadata") or {}).get("name"):
            raise KustomizeError(f"{path}: every document needs kind and metadata.name")
        if doc["kind"].endswith("List"):
            raise KustomizeError(f"{path}: List kinds are not supported")
    return docs


def _build(root: Path, stack: tuple[Path, ...]) -> list[Resource]:
    if root in stack:
        raise KustomizeError(f"{root}: cycle in resources")
    kustomization = _load_kustomization(root)
    resources: list[Resource] = []
    for entry in kustomization.get("resources") or []:
        target = (root / entry).resolve()
        if target.is_dir():
            resources.extend(_build(target, (*stack, root)))
        else:
            resources.extend(_load_documents(_inside(root, entry, "resource")))
    _check_unique(resources, root)
    options = kustomization.get("generatorOptions") or {}
    _check_keys(options, _SUPPORTED_OPTION_FIELDS, f"{root}: generatorOptions")
    for generator in kustomization.get("configMapGenerator") or []:
        _absorb_generated(resources, _generate_config_map(root, generator, options), generator, root)
    for patch in kustomization.get("patches") or []:
        resources = _apply_patch(root, resources, patch)
    namespace = kustomization.get("namespace")
    if namespace:
        for resource in resources:
            if resource["kind"] in ("RoleBinding", "ClusterRoleBinding"):
                raise KustomizeError(f"{root}: namespace rewriting of {resource['kind']} subjects is not implemented")
            if resource["kind"] not in CLUSTER_SCOPED_KINDS:
                resource.setdefault("metadata", {})["namespace"] = namespace
    for image in kustomization.get("images") or []:
        _check_keys(image, _SUPPORTED_IMAGE_FIELDS, f"{root}: images entry")
        for resource in resources:
            _rewrite_images(resource, image)
    _check_unique(resources, root)
    return resources


def _check_keys(mapping: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = set(mapping) - allowed
    if unknown:
        raise KustomizeError(f"{where}: unsupported fields {sorted(unknown)}")


def _check_unique(resources: list[Resource], root: Path) -> None:
    seen: set[tuple[str, str, str, str]] = set()
    for resource in resources:
        rid = resource_id(resource)
        if rid in seen:
            raise KustomizeError(f"{root}: duplicate resource {rid}")
        seen.add(rid)


# ------------------------------------------------------------------------- generators


def _generate_config_map(root: Path, generator: dict[str, Any], options: dict[str, Any]) -> Resource:
    _check_keys(generator, _SUPPORTED_GENERATOR_FIELDS, f"{root}: configMapGenerator entry")
    own = generator.get("options") or {}
    _check_keys(own, _SUPPORTED_OPTION_FIELDS, f"{root}: configMapGenerator options")
    if not (own.get("disableNameSuffixHash", options.get("disableNameSuffixHash", False))):
        raise KustomizeError(f"{root}: {generator.get('name')}: name suffix hashing is not implemented")
    data: dict[str, str] = {}

    def put(key: str, value: str, source: str) -> None:
        if key in data:
            raise KustomizeError(f"{root}: {generator['name']}: duplicate key {key!r} ({source})")
        data[key] = value

    for item in generator.get("files") or []:
        key, _, relative = item.partition("=") if "=" in item else (Path(item).name, "", item)
        put(key, _inside(root, relative, "file").read_text(encoding="utf-8"), item)
    for item in generator.get("literals") or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise KustomizeError(f"{root}: literal {item!r} has no '='")
        put(key, value, item)
    for env_file in generator.get("envs") or []:
        text = _inside(root, env_file, "env file").read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if not sep:
                raise KustomizeError(f"{root}: {env_file}:{number}: expected KEY=VALUE")
            put(key.strip(), value, f"{env_file}:{number}")
    metadata: dict[str, Any] = {"name": generator["name"]}
    labels = {**(options.get("labels") or {}), **(own.get("labels") or {})}
    annotations = {**(options.get("annotations") or {}), **(own.get("annotations") or {})}
    if labels:
        metadata["labels"] = labels
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def _absorb_generated(resources: list[Resource], generated: Resource, generator: dict[str, Any], root: Path) -> None:
    behavior = generator.get("behavior", "create")
    name = generated["metadata"]["name"]
    matches = [r for r in resources if r["kind"] == "ConfigMap" and r["metadata"]["name"] == name]
    if behavior == "create":
        if matches:
            raise KustomizeError(f"{root}: ConfigMap {name} already exists (use behavior merge/replace)")
        resources.append(generated)
    elif behavior in ("merge", "replace"):
        if len(matches) != 1:
            raise KustomizeError(
                f"{root}: behavior {behavior} needs exactly one ConfigMap {name}, found {len(matches)}"
            )
        existing = matches[0]
        if behavior == "replace":
            existing["data"] = generated["data"]
        else:
            existing["data"] = {**(existing.get("data") or {}), **generated["data"]}
        for field in ("labels", "annotations"):
            if field in generated["metadata"]:
                existing["metadata"][field] = {**existing["metadata"].get(field, {}), **generated["metadata"][field]}
    else:
        raise KustomizeError(f"{root}: unknown generator behavior {behavior!r}")


# ---------------------------------------------------------------------------- patches


def _api_group_version(resource: Resource) -> tuple[str, str]:
    api_version = str(resource.get("apiVersion", ""))
    group, _, version = api_version.rpartition("/")
    return group, version


def _selected(resource: Resource, target: dict[str, Any]) -> bool:
    group, version = _api_group_version(resource)
    meta = resource.get("metadata") or {}
    checks = {
        "group": group,
        "version": version,
        "kind": resource.get("kind", ""),
        "namespace": meta.get("namespace", ""),
    }
    for field, actual in checks.items():
        if field in target and target[field] != actual:
            return False
    # kustomize treats the target name as an anchored regular expression.
    return not ("name" in target and not re.fullmatch(str(target["name"]), str(meta.get("name", ""))))


def _apply_patch(root: Path, resources: list[Resource], patch: dict[str, Any]) -> list[Resource]:
    _check_keys(patch, frozenset({"path", "patch", "target"}), f"{root}: patches entry")
    if ("path" in patch) == ("patch" in patch):
        raise KustomizeError(f"{root}: a patch needs exactly one of path or patch")
    text = _inside(root, patch["path"], "patch").read_text(encoding="utf-8") if "path" in patch else patch["patch"]
    docs = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    if len(docs) != 1:
        raise KustomizeError(f"{root}: one patch per entry, got {len(docs)} documents")
    body = docs[0]
    target = patch.get("target")
    if target is not None:
        _check_keys(target, _SUPPORTED_TARGET_FIELDS, f"{root}: patch target")
    if isinstance(body, list):
        if target is None:
            raise KustomizeError(f"{root}: a JSON6902 patch needs a target")
        selected = [r for r in resources if _selected(r, target)]
        if not selected:
            raise KustomizeError(f"{root}: patch target {target} matches no resource")
        return [apply_json6902(r, body) if _selected(r, target) else r for r in resources]
    if not isinstance(body, dict):
        raise KustomizeError(f"{root}: a patch must be a JSON6902 list or a strategic-merge mapping")
    return _apply_strategic_merge(root, resources, body, target)


def _apply_strategic_merge(
    root: Path, resources: list[Resource], body: dict[str, Any], target: dict[str, Any] | None
) -> list[Resource]:
    if target is None:
        group, version = _api_group_version(body)
        target = {"group": group, "version": version, "kind": body.get("kind"), "name": body["metadata"]["name"]}
    selected = [r for r in resources if _selected(r, target)]
    if not selected:
        raise KustomizeError(f"{root}: strategic-merge patch for {target} matches no resource")
    directive = body.get("$patch")
    if directive == "delete":
        return [r for r in resources if not _selected(r, target)]
    if directive is not None:
        raise KustomizeError(f"{root}: $patch: {directive} is not implemented")
    out: list[Resource] = []
    for resource in resources:
        if _selected(resource, target):
            merged = copy.deepcopy(resource)
            _merge_maps(merged, {k: v for k, v in body.items() if k not in ("apiVersion", "kind")}, "")
            out.append(merged)
        else:
            out.append(resource)
    return out


def _merge_maps(into: dict[str, Any], patch: dict[str, Any], where: str) -> None:
    for key, value in patch.items():
        path = f"{where}.{key}"
        if key.startswith("$"):
            raise KustomizeError(f"strategic-merge directive {key} at {path} is not implemented")
        if value is None:
            into.pop(key, None)
        elif isinstance(value, list):
            raise KustomizeError(f"lists in strategic-merge patches are not implemented ({path}); use JSON6902")
        elif isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge_maps(into[key], value, path)
        else:
            into[key] = copy.deepcopy(value)


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer {path!r} must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _index(container: list[Any], token: str, path: str, *, allow_end: bool) -> int:
    if allow_end and token == "-":
        return len(container)
    if not re.fullmatch(r"0|[1-9][0-9]*", token):
        raise KustomizeError(f"{path}: {token!r} is not a list index")
    index = int(token)
    limit = len(container) if allow_end else len(container) - 1
    if index > limit:
        raise KustomizeError(f"{path}: index {index} out of range")
    return index


def _parent(document: Any, tokens: list[str], path: str) -> Any:
    node = document
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise KustomizeError(f"{path}: {token!r} does not exist")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, path, allow_end=False)]
        else:
            raise KustomizeError(f"{path}: cannot descend into a scalar")
    return node


def apply_json6902(resource: Resource, operations: list[dict[str, Any]]) -> Resource:
    """Apply RFC 6902 ``add``/``remove``/``replace``/``test`` operations to a copy of ``resource``."""
    document = copy.deepcopy(resource)
    for op in operations:
        kind, path = op.get("op"), op.get("path")
        if not isinstance(path, str):
            raise KustomizeError(f"JSON6902 operation without a path: {op}")
        tokens = _pointer(path)
        if not tokens:
            raise KustomizeError("JSON6902 operations on the whole document are not supported")
        parent = _parent(document, tokens, path)
        last = tokens[-1]
        if kind == "test":
            if isinstance(parent, dict):
                actual = parent.get(last, _MISSING)
            else:
                actual = parent[_index(parent, last, path, allow_end=False)]
            if actual != op.get("value"):
                raise KustomizeError(f"JSON6902 test failed at {path}: {actual!r} != {op.get('value')!r}")
        elif kind == "add":
            value = copy.deepcopy(op["value"])
            if isinstance(parent, dict):
                parent[last] = value
            else:
                parent.insert(_index(parent, last, path, allow_end=True), value)
        elif kind in ("remove", "replace"):
            if isinstance(parent, dict):
                if last not in parent:
                    raise KustomizeError(f"JSON6902 {kind}: {path} does not exist")
                if kind == "remove":
                    del parent[last]
                else:
                    parent[last] = copy.deepcopy(op["value"])
            else:
                index = _index(parent, last, path, allow_end=False)
                if kind == "remove":
                    del parent[index]
                else:
                    parent[index] = copy.deepcopy(op["value"])
        else:
            raise KustomizeError(f"JSON6902 op {kind!r} is not implemented")
    return document


# ----------------------------------------------------------------------------- images


def _split_image(image: str) -> tuple[str, str, str]:
    """``(name, tag, digest)`` of an image reference (a registry port is not a tag)."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :], digest
    return name, "", digest


def iter_images(node: Any) -> Iterator[dict[str, Any]]:
    """Every container mapping under a ``containers``/``initContainers`` list, anywhere."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                for container in value:
                    if isinstance(container, dict) and isinstance(container.get("image"), str):
                        yield container
            else:
                yield from iter_images(value)
    elif isinstance(node, list):
        for item in node:
            yield from iter_images(item)


def _rewrite_images(resource: Resource, rule: dict[str, Any]) -> None:
    for container in iter_images(resource):
        name, tag, digest = _split_image(container["image"])
        if name != rule["name"]:
            continue
        new_name = rule.get("newName", name)
        if rule.get("digest"):
            container["image"] = f"{new_name}@{rule['digest']}"
        elif rule.get("newTag"):
            container["image"] = f"{new_name}:{rule['newTag']}"
        else:
            suffix = f":{tag}" if tag else ""
            suffix += f"@{digest}" if digest else ""
            container["image"] = f"{new_name}{suffix}"


def main(argv: list[str]) -> int:
    """Print the rendering of each kustomization folder given as an argument."""
    if not argv:
        print("usage: python -m tests.unit.k8s.kustomize_lite DIR [DIR...]", file=sys.stderr)
        return 2
    for folder in argv:
        yaml.safe_dump_all(render(folder), sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
