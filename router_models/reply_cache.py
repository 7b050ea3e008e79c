"""Model replies kept beside a label file, so that a rerun does not pay for them twice.

``slm-router label`` writes a label only when both answers and both grades are in. A prompt
that fails on one side (an upstream error, a judge without a verdict) used to cost its other,
successful calls again on the rerun. Each reply is now appended to ``<labels>.replies`` as it
arrives, keyed by a digest of the request (model, messages, token cap, tools: what determines
the reply at temperature 0), and a rerun takes it from there. The file is removed once a run ends
with every prompt labelled, since the label file then holds every answer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

__all__ = ["CachedReply", "ReplyCache", "request_digest"]


def request_digest(model: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> str:
    """What identifies a deterministic reply: the model, the exact messages and every other
    request parameter (temperature, token cap, the tools offered)."""
    request = {"model": model, "messages": list(messages), **params}
    return hashlib.sha256(json.dumps(request, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@dataclass(frozen=True)
class CachedReply:
    """A reply from an earlier run, and whether it stopped at the token cap."""

    text: str
    truncated: bool


class ReplyCache:
    """Append-only ``<labels>.replies`` (JSON lines), read once when opened."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._replies = _read(path)
        self._sink: IO[str] | None = None

    @classmethod
    def beside(cls, labels: Path) -> ReplyCache:
        """The cache that belongs to the label file ``labels``."""
        return cls(labels.with_name(labels.name + ".replies"))

    def __len__(self) -> int:
        return len(self._replies)

    def get(self, digest: str) -> CachedReply | None:
        """The reply kept for ``digest``, if any."""
        return self._replies.get(digest)

    def put(self, digest: str, reply: CachedReply) -> None:
        """Keep ``reply``, flushed at once: a crash right after still keeps it."""
        if self._sink is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._sink = self.path.open("a", encoding="utf-8")
        line = {"request": digest, "reply": reply.text, "truncated": reply.truncated}
        self._sink.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._sink.flush()
        self._replies[digest] = reply

    def close(self) -> None:
        """Close the file (the replies stay on disk)."""
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    def discard(self) -> None:
        """Close and delete the file: every reply it held is in the label file now."""
        self.close()
        self.path.unlink(missing_ok=True)
        self._replies.clear()

    def __enter__(self) -> ReplyCache:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def _read(path: Path) -> dict[str, CachedReply]:
    # A cache, not a record: a line that does not read (cut short by a crash, edited by hand)
    # only costs its call again.
    replies: dict[str, CachedReply] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return replies
    for raw in text.splitlines():
        try:
            line = json.loads(raw)
            digest, reply, truncated = line["request"], line["reply"], line["truncated"]
        except (json.JSONDecodeError, TypeError, KeyError):
            continue
        if isinstance(digest, str) and isinstance(reply, str) and isinstance(truncated, bool):
            replies[digest] = CachedReply(reply, truncated)
    if text and not text.endswith("\n"):
        # The next append must start on a line of its own.
        with path.open("a", encoding="utf-8") as sink:
            sink.write("\n")
    return replies
