"""Exception hierarchy for router_models.

Callers (the gateway) catch :class:`RouterError` for anything this package raises on purpose;
:class:`RouterArtifactError` is the single class for "this artifact cannot be trusted or used".
"""

from __future__ import annotations


class RouterError(Exception):
    """Base class of every error raised deliberately by ``router_models``."""


class RouterArtifactError(RouterError):
    """A router artifact is missing, corrupt, tampered with, or incompatible with this code."""


class RouterDataError(RouterError):
    """The training/evaluation data set is missing or malformed."""
