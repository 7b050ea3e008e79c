"""Fixtures for router_models tests: data location, small trained routers, temp caches."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from router_models.data import LabeledPrompts, load_dataset


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "embedding: loads the MiniLM sentence encoder (runs on a small data slice)")


def data_dir() -> Path:
    """``$SLM_ROUTER_DATA`` or ``<repo>/../shared/data/routellm``."""
    env = os.environ.get("SLM_ROUTER_DATA")
    return Path(env) if env else Path(__file__).parents[3].parent / "shared/data/routellm"


@pytest.fixture(scope="session")
def routellm_dir() -> Path:
    path = data_dir()
    if not (path / "mmlu").is_dir():
        pytest.skip(f"RouteLLM data not found at {path} (set SLM_ROUTER_DATA)")
    return path


@pytest.fixture(scope="session")
def mmlu(routellm_dir: Path) -> LabeledPrompts:
    return load_dataset("mmlu", routellm_dir)


@pytest.fixture(scope="session")
def gsm8k(routellm_dir: Path) -> LabeledPrompts:
    return load_dataset("gsm8k", routellm_dir)


@pytest.fixture(scope="session")
def mmlu_split(mmlu: LabeledPrompts) -> tuple[LabeledPrompts, LabeledPrompts]:
    """(train 4000, test 1500) disjoint random MMLU slices."""
    idx = np.random.default_rng(123).permutation(len(mmlu))
    return mmlu.subset(idx[:4000]), mmlu.subset(idx[4000:5500])


@pytest.fixture(scope="package")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Embedding/ONNX cache in a temp dir so tests never touch the user's cache.

    Package-scoped: the variable is restored once this package's tests are done, so later
    tests (the vLLM parser tests' SmolLM2, say) find the machine's prepared models."""
    path = tmp_path_factory.mktemp("slm-router-cache")
    old = os.environ.get("SLM_ROUTER_CACHE")
    os.environ["SLM_ROUTER_CACHE"] = str(path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    yield path
    if old is None:
        os.environ.pop("SLM_ROUTER_CACHE", None)
    else:
        os.environ["SLM_ROUTER_CACHE"] = old
