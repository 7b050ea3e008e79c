"""Exact-match cache of non-stream chat completions, shared by every replica.

The cache key is the SHA-256 of a *normalised* request: only what changes the output
counts (model, message roles and texts, tool calls and tools, sampling parameters and
``logit_bias``, ``reasoning_effort`` and ``verbosity``, the routing threshold), in one canonical JSON
form, so ``"content": "hi"`` and ``[{"type": "text", "text": "hi"}]``, ``1`` and ``1.0``,
``stop: "x"`` and ``["x"]`` hit the same entry, while ``user``, ``stream`` and unknown
fields are ignored. When the gateway starts honouring a new parameter, add it to
:func:`normalise_request` and bump :data:`CACHE_KEY_VERSION`.

Entries are JSON strings with a TTL; a sorted set indexes them by insertion time so a
Lua script can keep at most ``max_entries`` (evicting the oldest) atomically. Redis
being down is a cache miss, never an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis

from gateway.state.config import CacheConfig
from gateway.state.errors import REDIS_FAILURES
from gateway.state.health import RedisHealth
from gateway.state.keys import KeySpace

__all__ = ["CACHE_KEY_VERSION", "ResponseCache", "cache_digest", "normalise_request"]

logger = logging.getLogger(__name__)

#: Part of every digest: bumping it invalidates every entry at once.
CACHE_KEY_VERSION = 8

# ``router_threshold`` picks the tier that answers a routed request; the chat endpoint also
# puts a header's or the API key's threshold there for the key.
_FLOAT_PARAMS = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "router_threshold")

# KEYS[1]: the entry, KEYS[2]: the index (both tagged {cache}).
# ARGV: value, ttl (ms), max entries, digest, entry key prefix. Returns evicted count.
# Evicted entries are deleted by names built here; they share the {cache} tag, hence
# the slot, so this is also valid on Redis Cluster.
_PUT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
-- Scores (microseconds) strictly increase, so equal timestamps never make ZPOPMIN
-- fall back to digest order: "oldest" stays insertion order.
local score = now
local top = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if top[2] and tonumber(top[2]) >= score then score = tonumber(top[2]) + 1 end
redis.call('ZADD', KEYS[2], score, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - ttl * 1000)
local evicted = 0
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if excess > 0 then
  local oldest = redis.call('ZPOPMIN', KEYS[2], excess)
  for i = 1, #oldest, 2 do
    redis.call('DEL', ARGV[5] .. oldest[i])
    evicted = evicted + 1
  end
end
redis.call('PEXPIRE', KEYS[2], ttl)
return evicted
"""


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number")
    return float(value)


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if not isinstance(part, Mapping) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ValueError("only text content parts can be cached")
            parts.append(part["text"])
        return "".join(parts)
    raise ValueError("message content must be a string or a list of text parts")


def _response_format(value: Any) -> Any:
    # Plain text is the default, so asking for it is the same request as not asking. Any other
    # format keys the entry as sent (the digest's JSON sorts object keys).
    if value is None or value == {"type": "text"}:
        return None
    if not isinstance(value, Mapping):
        raise ValueError("response_format must be an object")
    return dict(value)


def _tool_calls(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise ValueError("tool_calls must be a list")
    calls = []
    for call in value:
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping):
            raise ValueError("a tool call needs a function")
        calls.append({"id": call.get("id"), "name": function.get("name"), "arguments": function.get("arguments")})
    return calls


def _tool_options(request: Mapping[str, Any]) -> dict[str, Any]:
    # Without tools, tool_choice "none"/"auto" and parallel_tool_calls change nothing; with
    # them, leaving either out means OpenAI's default ("auto", parallel calls allowed).
    tools = request.get("tools")
    if not tools:
        return {"tools": None, "tool_choice": None, "parallel_tool_calls": None}
    if not isinstance(tools, list):
        raise ValueError("tools must be a list")
    choice = request.get("tool_choice")
    parallel = request.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise ValueError("parallel_tool_calls must be a boolean")
    return {
        "tools": tools,
        "tool_choice": "auto" if choice is None else choice,
        "parallel_tool_calls": True if parallel is None else parallel,
    }


def normalise_request(request: Mapping[str, Any]) -> dict[str, Any]:
    """The output-relevant part of a chat-completion request, in canonical form.

    Mirrors what :class:`gateway.serving.ChatCompletionService` sends to engines:
    ``developer`` becomes ``system``, content parts are joined, ``max_completion_tokens``
    wins over ``max_tokens``. Raises ValueError for a request that cannot be cached.
    """
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise ValueError("model must be a non-empty string")
    raw_messages = request.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise ValueError("messages must be a non-empty list")
    messages = []
    for message in raw_messages:
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise ValueError("each message needs a role")
        role = "system" if message["role"] == "developer" else message["role"]
        normal_message: dict[str, Any] = {"role": role, "content": _text(message.get("content"))}
        if message.get("tool_calls"):
            normal_message["tool_calls"] = _tool_calls(message["tool_calls"])
        if message.get("tool_call_id") is not None:
            normal_message["tool_call_id"] = str(message["tool_call_id"])
        messages.append(normal_message)
    normal: dict[str, Any] = {"model": model, "messages": messages}
    normal.update(_tool_options(request))
    for name in _FLOAT_PARAMS:
        value = request.get(name)
        normal[name] = None if value is None else _number(name, value)
    max_tokens = request.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = request.get("max_tokens")
    seed = request.get("seed")
    n = request.get("n")
    for name, value in (("max_tokens", max_tokens), ("seed", seed), ("n", n)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{name} must be an integer")
    normal["max_tokens"] = max_tokens
    normal["seed"] = seed
    normal["n"] = 1 if n is None else n
    stop = request.get("stop")
    if stop is None:
        normal["stop"] = []
    elif isinstance(stop, str):
        normal["stop"] = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        normal["stop"] = list(stop)
    else:
        raise ValueError("stop must be a string or a list of strings")
    normal["response_format"] = _response_format(request.get("response_format"))
    # An answer cached without logprobs has none to give; false and absent are the same request.
    logprobs = request.get("logprobs")
    top = request.get("top_logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise ValueError("logprobs must be a boolean")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int)):
        raise ValueError("top_logprobs must be an integer")
    normal["logprobs"] = bool(logprobs)
    normal["top_logprobs"] = (top or 0) if logprobs else 0
    bias = request.get("logit_bias")
    if bias is not None and not isinstance(bias, Mapping):
        raise ValueError("logit_bias must be an object")
    # No bias is the same request as an empty one; token ids key in a fixed order.
    normal["logit_bias"] = {str(k): _number("logit_bias", v) for k, v in sorted(bias.items())} if bias else None
    # A model's default reasoning effort varies by model, so only an absent one is "default";
    # verbosity's default is "medium" everywhere.
    effort, verbosity = request.get("reasoning_effort"), request.get("verbosity")
    for name, value in (("reasoning_effort", effort), ("verbosity", verbosity)):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} must be a string")
    raw = request.get("raw_prompt", False)
    if not isinstance(raw, bool):
        raise ValueError("raw_prompt must be a boolean")
    # A /v1/completions prompt (no chat template) is another request than the same chat message.
    normal["raw_prompt"] = raw
    # vLLM's sampling extensions, at their defaults when unset (so unset and default agree).
    for name, default in (
        ("ignore_eos", False),
        ("min_tokens", 0),
        ("top_k", -1),
        ("min_p", 0.0),
        ("repetition_penalty", 1.0),
    ):
        value = request.get(name)
        if name == "top_k" and value == 0:
            value = -1
        normal[name] = default if value is None else value
    normal["reasoning_effort"] = effort
    normal["verbosity"] = None if verbosity == "medium" else verbosity
    constrained = request.get("structured_outputs")
    if constrained is not None and not isinstance(constrained, Mapping):
        raise ValueError("structured_outputs must be an object")
    # vLLM's decoding constraint (validated, unset keys left out): another constraint, another answer.
    normal["structured_outputs"] = dict(constrained) if constrained else None
    for name in ("stop_token_ids", "allowed_token_ids", "bad_words"):
        value = request.get(name)
        if value is not None and not isinstance(value, list):
            raise ValueError(f"{name} must be a list")
        normal[name] = list(value) if value else None  # empty asks for nothing
    return normal


def cache_digest(request: Mapping[str, Any], scope: str = "") -> str:
    """SHA-256 (hex) of the normalised request within ``scope`` (e.g. a tenant)."""
    canonical = json.dumps(
        normalise_request(request), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    payload = f"v{CACHE_KEY_VERSION}\n{scope}\n{canonical}".encode()
    return hashlib.sha256(payload).hexdigest()


class ResponseCache:
    """Shared exact-match cache of chat-completion responses (JSON dicts)."""

    def __init__(self, client: Redis, keys: KeySpace, health: RedisHealth, config: CacheConfig) -> None:
        self._client = client
        self._keys = keys
        self._health = health
        self._config = config
        self._put = client.register_script(_PUT_LUA)
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        """Whether the configuration turns the cache on (callers skip it otherwise)."""
        return self._config.enabled

    async def get(self, request: Mapping[str, Any], scope: str = "") -> dict[str, Any] | None:
        """The cached response for ``request``, or None (miss, uncachable request, Redis down).

        ``scope`` separates caches (pass the tenant so one tenant never sees, or times,
        another's cached answers).
        """
        try:
            digest = cache_digest(request, scope)
        except ValueError:
            return None
        if not self._health.allow_attempt():
            self.misses += 1
            return None
        try:
            raw = await self._client.get(self._keys.cache_entry(digest))
        except REDIS_FAILURES as exc:
            self._health.record_failure(exc)
            self.misses += 1
            return None
        self._health.record_success()
        if raw is None:
            self.misses += 1
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            logger.warning("dropping a corrupt cache entry %s", digest)
            self.misses += 1
            return None
        if not isinstance(value, dict):
            self.misses += 1
            return None
        self.hits += 1
        return value

    async def put(self, request: Mapping[str, Any], response: Mapping[str, Any], scope: str = "") -> bool:
        """Store ``response`` for ``request``; False when not stored (too big, uncachable, Redis down)."""
        try:
            digest = cache_digest(request, scope)
            value = json.dumps(response, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
        except (ValueError, TypeError):
            return False
        if len(value) > self._config.max_entry_bytes:
            return False
        if not self._health.allow_attempt():
            return False
        try:
            await self._put(
                keys=[self._keys.cache_entry(digest), self._keys.cache_index()],
                args=[
                    value,
                    max(1, int(self._config.ttl_s * 1000)),
                    self._config.max_entries,
                    digest,
                    self._keys.cache_entry_prefix(),
                ],
            )
        except REDIS_FAILURES as exc:
            self._health.record_failure(exc)
            return False
        self._health.record_success()
        return True
