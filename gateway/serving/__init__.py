"""Serving logic, independent of the HTTP framework and of Ray."""

from gateway.serving.chat import HEADER_MODEL, HEADER_TIER, ChatCompletionService, ChatResult, StreamResult, Tier
from gateway.serving.health import HealthReport, HealthService

__all__ = [
    "HEADER_MODEL",
    "HEADER_TIER",
    "ChatCompletionService",
    "ChatResult",
    "HealthReport",
    "HealthService",
    "StreamResult",
    "Tier",
]
