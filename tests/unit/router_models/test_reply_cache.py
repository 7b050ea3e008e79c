"""The reply cache beside a label file: what identifies a reply, and reading it back after a crash."""

from __future__ import annotations

from pathlib import Path

from router_models.reply_cache import CachedReply, ReplyCache, request_digest

MESSAGES = [{"role": "user", "content": "What is 2+2?"}]


def test_the_digest_is_the_model_the_messages_and_the_parameters() -> None:
    params = {"temperature": 0, "max_tokens": 64}
    base = request_digest("small", MESSAGES, params)
    assert request_digest("small", [dict(m) for m in MESSAGES], {"max_tokens": 64, "temperature": 0}) == base
    assert request_digest("large", MESSAGES, params) != base
    assert request_digest("small", MESSAGES, {**params, "max_tokens": 128}) != base
    assert request_digest("small", MESSAGES, {**params, "tools": [{"type": "function"}]}) != base
    assert request_digest("small", [{"role": "user", "content": "What is 2+3?"}], params) != base
    assert request_digest("small", [{"role": "system", "content": "Be brief."}, *MESSAGES], params) != base


def test_replies_survive_a_restart_and_a_line_cut_short(tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl"
    with ReplyCache.beside(labels) as cache:
        assert cache.path == tmp_path / "labels.jsonl.replies" and len(cache) == 0
        cache.put("a", CachedReply("4", truncated=False))
        cache.put("b", CachedReply("long ...", truncated=True))
    # A crash mid-write leaves half a line; a hand edit may leave junk. Both only cost a call again.
    with cache.path.open("a", encoding="utf-8") as sink:
        sink.write('not json\n{"request": "c", "reply": 5, "truncated": false}\n{"request": "d", "rep')
    with ReplyCache.beside(labels) as again:
        assert len(again) == 2
        assert again.get("a") == CachedReply("4", False) and again.get("b") == CachedReply("long ...", True)
        assert again.get("c") is None and again.get("d") is None
        again.put("e", CachedReply("new", truncated=False))  # lands on a line of its own
    assert ReplyCache.beside(labels).get("e") == CachedReply("new", False)


def test_discard_removes_the_file(tmp_path: Path) -> None:
    cache = ReplyCache.beside(tmp_path / "labels.jsonl")
    cache.put("a", CachedReply("4", truncated=False))
    cache.discard()
    assert not cache.path.exists() and cache.get("a") is None
    ReplyCache.beside(tmp_path / "nothing.jsonl").discard()  # no file: nothing to do
