"""Serving logic, independent of the HTTP framework and of Ray."""

from gateway.serving.chat import (
    HEADER_DROPPED_PARAMS,
    HEADER_MODEL,
    HEADER_REASON,
    HEADER_ROUTER,
    HEADER_SCORE,
    HEADER_THRESHOLD,
    HEADER_TIER,
    ChatCompletionService,
    ChatResult,
    StreamResult,
)
from gateway.serving.health import HealthCheck, HealthReport, HealthService
from gateway.serving.tiers import Tier, failover_reason

__all__ = [
    "HEADER_DROPPED_PARAMS",
    "HEADER_MODEL",
    "HEADER_REASON",
    "HEADER_ROUTER",
    "HEADER_SCORE",
    "HEADER_THRESHOLD",
    "HEADER_TIER",
    "ChatCompletionService",
    "ChatResult",
    "HealthCheck",
    "HealthReport",
    "HealthService",
    "StreamResult",
    "Tier",
    "failover_reason",
]
