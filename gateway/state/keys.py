"""The Redis key layout of the shared state: every key name is built here.

All keys start with one namespace prefix (``slm`` by default) so several gateways, or a
gateway and other applications, can share a Redis without clashing. Keys that a Lua
script or a ``MULTI`` touches together carry the same Redis Cluster *hash tag* (the part
in braces), so they live in the same slot and the script is legal on a cluster.
``docs/redis.md`` has the full table; keep the two in sync.
"""

from __future__ import annotations

import re

__all__ = ["DEFAULT_PREFIX", "KeySpace", "hash_tag"]

#: Namespace prefix used when the configuration does not name one.
DEFAULT_PREFIX = "slm"

# Prefixes become part of every key; braces would break the hash-tag scheme and
# whitespace/colons would make the layout ambiguous to operators reading SCAN output.
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
# Ids that go inside a hash tag must not contain braces (they would end the tag early).
_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


def hash_tag(key: str) -> str | None:
    """The Redis Cluster hash tag of ``key`` (the text between the first ``{`` and ``}``), if any.

    Mirrors the server's rule: only a non-empty tag counts.
    """
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    if end <= start + 1:
        return None
    return key[start + 1 : end]


def _check_id(kind: str, value: str) -> str:
    if not _ID_RE.fullmatch(value):
        raise ValueError(f"invalid {kind} for a Redis key: must match {_ID_RE.pattern}")
    return value


class KeySpace:
    """Builds every Redis key of the gateway's shared state under one prefix."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        if not _PREFIX_RE.fullmatch(prefix):
            raise ValueError(f"invalid key prefix {prefix!r}: must match {_PREFIX_RE.pattern}")
        self._prefix = prefix

    @property
    def prefix(self) -> str:
        """The namespace prefix, without the trailing colon."""
        return self._prefix

    def __repr__(self) -> str:
        return f"KeySpace(prefix={self._prefix!r})"

    # --- API keys -----------------------------------------------------------------
    # Everything about one API key shares the tag {key:<id>}: the record, its rate-limit
    # state and its usage ledger all land in one cluster slot.

    def api_key_record(self, key_id: str) -> str:
        """Hash with one API key's record and secret hash: ``<p>:{key:<id>}:rec``."""
        return f"{self._prefix}:{{key:{_check_id('key id', key_id)}}}:rec"

    def api_key_index(self) -> str:
        """Set of every API key id (for listing): ``<p>:keys``."""
        return f"{self._prefix}:keys"

    def rate_limit(self, key_id: str) -> str:
        """Hash with the GCRA state (request and token TATs) of one key: ``<p>:{key:<id>}:rl``."""
        return f"{self._prefix}:{{key:{_check_id('key id', key_id)}}}:rl"

    def key_usage(self, key_id: str) -> str:
        """Ledger hash of one key's usage counters: ``<p>:{key:<id>}:usage``."""
        return f"{self._prefix}:{{key:{_check_id('key id', key_id)}}}:usage"

    def tenant_usage(self, tenant: str) -> str:
        """Ledger hash of one tenant's usage counters: ``<p>:{tenant:<tenant>}:usage``."""
        return f"{self._prefix}:{{tenant:{_check_id('tenant', tenant)}}}:usage"

    @staticmethod
    def ledger_marker(ledger_key: str) -> str:
        """Hash of the last sequence number each writer applied to ``ledger_key``.

        It is ``ledger_key`` plus a suffix, so it keeps the ledger key's hash tag and the
        idempotent-increment script touches one slot.
        """
        return f"{ledger_key}:applied"

    # --- response cache -------------------------------------------------------------
    # The entries and their size index are updated by one script, so they share the tag
    # {cache}: the whole cache lives in one cluster slot (bounded by max_entries).

    def cache_entry(self, digest: str) -> str:
        """One cached response (JSON string, with a TTL): ``<p>:{cache}:e:<sha256>``."""
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError("a cache digest is 64 lowercase hex characters")
        return f"{self._prefix}:{{cache}}:e:{digest}"

    def cache_entry_prefix(self) -> str:
        """Prefix of every cache entry key (the cache script appends the digest)."""
        return f"{self._prefix}:{{cache}}:e:"

    def cache_index(self) -> str:
        """Sorted set digest -> insertion time (µs) used to evict oldest: ``<p>:{cache}:idx``."""
        return f"{self._prefix}:{{cache}}:idx"

    # --- captured conversations -------------------------------------------------------

    def captured_conversations(self) -> str:
        """Sorted set of sampled request conversations (JSON, scored by capture time):
        ``<p>:capture:conversations``."""
        return f"{self._prefix}:capture:conversations"

    def legacy_captured_conversations(self) -> str:
        """The list earlier versions kept the sample in (``<p>:capture``, no TTL), which
        ``DELETE /admin/capture`` still removes."""
        return f"{self._prefix}:capture"

    # --- stored responses -------------------------------------------------------------

    def stored_response(self, tenant_tag: str, response_id: str) -> str:
        """One kept Responses API response (JSON, with a TTL): ``<p>:resp:<tenant tag>:<id>``."""
        return f"{self._prefix}:resp:{_check_id('tenant tag', tenant_tag)}:{_check_id('response id', response_id)}"

    def background_state(self, tenant_tag: str, response_id: str) -> str:
        """A background response's run state (``running``, ``done`` or ``cancelled``, with the
        record's TTL): ``<p>:resp:<tenant tag>:<id>:state``."""
        return f"{self.stored_response(tenant_tag, response_id)}:state"

    def background_lease(self, tenant_tag: str, response_id: str) -> str:
        """Set, with a short TTL, while a replica runs the background response:
        ``<p>:resp:<tenant tag>:<id>:lease``."""
        return f"{self.stored_response(tenant_tag, response_id)}:lease"

    # --- conversations -----------------------------------------------------------------

    # A conversation's three keys share the tag {conv:<tenant tag>:<id>}: the append script
    # touches them together.

    def conversation(self, tenant_tag: str, conversation_id: str) -> str:
        """A conversation's record (JSON: created_at, metadata): ``<p>:{conv:<tenant tag>:<id>}``."""
        tag, conversation = _check_id("tenant tag", tenant_tag), _check_id("conversation id", conversation_id)
        return f"{self._prefix}:{{conv:{tag}:{conversation}}}"

    def conversation_items(self, tenant_tag: str, conversation_id: str) -> str:
        """A conversation's items, oldest first (a Redis stream): ``<p>:{conv:<tenant tag>:<id>}:items``."""
        return f"{self.conversation(tenant_tag, conversation_id)}:items"

    def conversation_item_index(self, tenant_tag: str, conversation_id: str) -> str:
        """Item id to stream entry id (a hash): ``<p>:{conv:<tenant tag>:<id>}:index``."""
        return f"{self.conversation(tenant_tag, conversation_id)}:index"

    def response_events(self, tenant_tag: str, response_id: str) -> str:
        """The events of a streamed background response (a Redis stream; entry ``0-<n>`` is the
        event of sequence number ``n - 1``): ``<p>:resp:<tenant tag>:<id>:events``."""
        return f"{self.stored_response(tenant_tag, response_id)}:events"
