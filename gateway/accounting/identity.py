"""Non-secret identities for API keys, fit for Redis fields, metric labels and logs."""

from __future__ import annotations

import hashlib

__all__ = ["key_id_from_secret"]


def key_id_from_secret(secret: str, *, salt: str = "slm-router") -> str:
    """A stable, non-reversible id for an API key (``key_`` + 16 hex digits of SHA-256).

    Use it when only the raw bearer token is at hand: the ledger and telemetry must
    never see the secret itself. 64 bits keep collisions negligible for any realistic
    number of keys while staying short enough for a label.
    """
    digest = hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()
    return f"key_{digest[:16]}"
