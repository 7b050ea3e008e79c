"""Router artifacts cannot run code and are refused when tampered with.

The rule (``router_models.artifacts``): arrays are read with ``allow_pickle=False``, every
file listed in ``metadata.json`` must match its sha256, and listed files must be regular
files inside the artifact folder. These tests work on a copy of the shipped default
artifact, so they need no training data.
"""

from __future__ import annotations

import json
import pathlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from router_models import RouterArtifactError, default_artifact_path, load_router
from router_models.artifacts import ARRAYS_FILE, METADATA_FILE, sha256_file


class _TouchOnUnpickle:
    """Unpickling this creates ``marker``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture()
def artifact(tmp_path: Path) -> Path:
    copy = tmp_path / "artifact"
    shutil.copytree(default_artifact_path(), copy)
    return copy


def _metadata(folder: Path) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((folder / METADATA_FILE).read_text())
    return meta


def _write_metadata(folder: Path, meta: dict[str, Any]) -> None:
    (folder / METADATA_FILE).write_text(json.dumps(meta))


def _rehash(folder: Path) -> None:
    """What an attacker who can write the folder does: make the recorded hash match again."""
    meta = _metadata(folder)
    meta["files"][ARRAYS_FILE] = sha256_file(folder / ARRAYS_FILE)
    _write_metadata(folder, meta)


def test_the_untouched_copy_loads(artifact: Path) -> None:
    assert load_router(artifact).name == _metadata(artifact)["router"]


def test_pickle_in_the_arrays_never_runs_even_with_a_matching_hash(artifact: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with np.load(artifact / ARRAYS_FILE, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    payload = np.empty(1, dtype=object)
    payload[0] = _TouchOnUnpickle(marker)
    # np.savez pickles object arrays; keep every real array so only the payload is new.
    np.savez(artifact / ARRAYS_FILE, **arrays, payload=payload)
    _rehash(artifact)

    with pytest.raises(RouterArtifactError, match=r"unreadable.*allow_pickle=False"):
        load_router(artifact)
    assert not marker.exists()

    # The payload is live: a loader that allowed pickles would have run it.
    with np.load(artifact / ARRAYS_FILE, allow_pickle=True) as npz:
        npz["payload"]
    assert marker.exists()


def test_tampered_arrays_are_refused(artifact: Path) -> None:
    data = bytearray((artifact / ARRAYS_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01
    (artifact / ARRAYS_FILE).write_bytes(bytes(data))
    with pytest.raises(RouterArtifactError, match="sha256 mismatch"):
        load_router(artifact)


def test_a_wrong_recorded_hash_is_refused(artifact: Path) -> None:
    meta = _metadata(artifact)
    meta["files"][ARRAYS_FILE] = "0" * 64
    _write_metadata(artifact, meta)
    with pytest.raises(RouterArtifactError, match="sha256 mismatch"):
        load_router(artifact)


def test_metadata_must_list_the_arrays(artifact: Path) -> None:
    meta = _metadata(artifact)
    del meta["files"][ARRAYS_FILE]
    _write_metadata(artifact, meta)
    with pytest.raises(RouterArtifactError, match=f"lists no {ARRAYS_FILE}"):
        load_router(artifact)


def test_listed_files_outside_the_folder_are_refused(artifact: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"not part of the artifact")
    meta = _metadata(artifact)
    meta["files"]["../outside.bin"] = sha256_file(outside)
    _write_metadata(artifact, meta)
    with pytest.raises(RouterArtifactError, match="outside the artifact directory"):
        load_router(artifact)


def test_symlinked_arrays_are_refused(artifact: Path, tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.npz"
    shutil.move(artifact / ARRAYS_FILE, real)
    (artifact / ARRAYS_FILE).symlink_to(real)
    with pytest.raises(RouterArtifactError, match="not a regular file"):
        load_router(artifact)
