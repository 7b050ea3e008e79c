"""Shared state of all gateway replicas, kept in Redis: API keys, rate limits, response
cache, stored Responses API responses and a usage ledger that survives Redis outages.
See ``docs/redis.md``.
"""

from gateway.state.api_keys import (
    ApiKeyRecord,
    ApiKeyStore,
    format_api_key,
    parse_api_key,
    parse_bearer,
    read_secret_env,
    verify_admin,
)
from gateway.state.capture import ConversationCapture
from gateway.state.config import (
    AuthConfig,
    CacheConfig,
    CaptureConfig,
    ConversationStoreConfig,
    RateLimitConfig,
    ResponseStoreConfig,
    StateConfig,
)
from gateway.state.conversations import Conversation, ConversationStore, ItemPage
from gateway.state.errors import StateUnavailableError
from gateway.state.health import RedisHealth
from gateway.state.keys import KeySpace
from gateway.state.ledger import BufferedWriter, LedgerOp
from gateway.state.rate_limit import RateDecision, RateLimiter, estimate_tokens
from gateway.state.response_cache import ResponseCache, cache_digest, normalise_request
from gateway.state.response_events import LoggedEvent, ResponseEventLog
from gateway.state.store import StateStore, build_client, redact_url
from gateway.state.stored_responses import ResponseStore, StoredResponse

__all__ = [
    "ApiKeyRecord",
    "ApiKeyStore",
    "AuthConfig",
    "BufferedWriter",
    "CacheConfig",
    "CaptureConfig",
    "Conversation",
    "ConversationCapture",
    "ConversationStore",
    "ConversationStoreConfig",
    "ItemPage",
    "KeySpace",
    "LedgerOp",
    "LoggedEvent",
    "RateDecision",
    "RateLimitConfig",
    "RateLimiter",
    "RedisHealth",
    "ResponseCache",
    "ResponseEventLog",
    "ResponseStore",
    "ResponseStoreConfig",
    "StateConfig",
    "StateStore",
    "StateUnavailableError",
    "StoredResponse",
    "build_client",
    "cache_digest",
    "estimate_tokens",
    "format_api_key",
    "normalise_request",
    "parse_api_key",
    "parse_bearer",
    "read_secret_env",
    "redact_url",
    "verify_admin",
]
