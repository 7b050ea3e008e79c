"""Fixtures: every overlay rendered once per session (pure Python, no cluster, no network)."""

from __future__ import annotations

import pytest

from tests.unit.k8s.manifests import OVERLAYS, RenderedOverlay, load_overlay

_CACHE: dict[str, RenderedOverlay] = {}


def rendered(name: str) -> RenderedOverlay:
    """The rendering of overlay ``name`` (rendered on first use)."""
    if name not in _CACHE:
        _CACHE[name] = load_overlay(name)
    return _CACHE[name]


@pytest.fixture(scope="session", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> RenderedOverlay:
    """Each overlay in turn."""
    return rendered(str(request.param))


@pytest.fixture(scope="session")
def cpu_local() -> RenderedOverlay:
    """The laptop profile."""
    return rendered("cpu-local")


@pytest.fixture(scope="session")
def gpu_prod() -> RenderedOverlay:
    """The GPU production profile."""
    return rendered("gpu-prod")
