"""Ledger key layout: the pure request-to-increments function, fields, buckets, slots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from redis.crc import key_slot

from gateway.accounting import HashIncrement, LedgerLayout, RequestCost, SeriesKey
from gateway.accounting.layout import decode_field, encode_field
from gateway.accounting.summary import Counts, parse_bucket, summarize

AT = datetime(2025, 3, 4, 13, 37, 5, tzinfo=UTC)


def test_ops_are_fifteen_increments_in_one_cluster_slot() -> None:
    layout = LedgerLayout(prefix="acct")
    ops = layout.ops(RequestCost(100, 20, 3_000, 9_000), tier="small", model="smol", key_id="key_1", at=AT)
    assert len(ops) == 15
    assert all(isinstance(op, HashIncrement) and isinstance(op, tuple) for op in ops)
    assert layout.unique_keys(ops) == ["{acct}:h:2025030413", "{acct}:d:20250304", "{acct}:total"]
    assert len({key_slot(op.key.encode()) for op in ops}) == 1
    hourly = {op.field: op.amount for op in ops if op.key == "{acct}:h:2025030413"}
    assert hourly == {
        "small|smol|key_1|requests": 1,
        "small|smol|key_1|prompt_tokens": 100,
        "small|smol|key_1|completion_tokens": 20,
        "small|smol|key_1|cost_nanos": 3_000,
        "small|smol|key_1|baseline_nanos": 9_000,
    }


def test_ops_use_utc_buckets() -> None:
    # 00:30 at UTC+2 is 22:30 UTC the day before.
    moment = datetime(2025, 3, 5, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    keys = LedgerLayout(prefix="p").unique_keys(
        LedgerLayout(prefix="p").ops(RequestCost(1, 1, 1, 1), tier="t", model="m", key_id=None, at=moment)
    )
    assert keys[:2] == ["{p}:h:2025030422", "{p}:d:20250304"]


def test_fields_round_trip_awkward_names() -> None:
    series = SeriesKey("t|1", "openai/gpt-4o%", "")
    field = encode_field(series, "cost_nanos")
    assert field == "t%7C1|openai/gpt-4o%25||cost_nanos"
    assert decode_field(field) == (series, "cost_nanos")
    assert decode_field("not-a-ledger-field") is None


def test_range_keys_use_day_rollups_for_whole_days() -> None:
    layout = LedgerLayout(prefix="p")
    since = datetime(2025, 3, 1, 22, 30, tzinfo=UTC)
    until = datetime(2025, 3, 3, 2, 10, tzinfo=UTC)
    assert layout.range_keys(since, until) == [
        "{p}:h:2025030122",
        "{p}:h:2025030123",
        "{p}:d:20250302",
        "{p}:h:2025030300",
        "{p}:h:2025030301",
        "{p}:h:2025030302",
    ]
    # "the last hour" reads the previous and the current hour.
    assert layout.range_keys(AT - timedelta(hours=1), AT) == ["{p}:h:2025030412", "{p}:h:2025030413"]
    assert layout.range_keys(AT, AT - timedelta(hours=2)) == []
    # A range reaching back to year 1 is clamped to the daily retention.
    assert len(layout.range_keys(datetime.min, AT)) < 900


def test_ttls() -> None:
    layout = LedgerLayout(prefix="p", hourly_ttl_s=10, daily_ttl_s=20)
    assert layout.ttl_for("{p}:h:2025030413") == 10
    assert layout.ttl_for("{p}:d:20250304") == 20
    assert layout.ttl_for("{p}:total") is None


def test_parse_and_summarize_bytes_reply() -> None:
    raw = {
        b"small|smol|k1|requests": b"2",
        b"small|smol|k1|cost_nanos": b"100",
        b"small|smol|k1|baseline_nanos": b"1000",
        b"large|big|k1|requests": b"1",
        b"large|big|k1|cost_nanos": b"500",
        b"large|big|k1|baseline_nanos": b"500",
        b"large|big||requests": b"1",
        b"small|smol|k1|some_future_metric": b"7",
    }
    series = parse_bucket(raw)
    assert series[SeriesKey("small", "smol", "k1")] == Counts(requests=2, cost_nanos=100, baseline_nanos=1000)
    summary = summarize(series, AT, AT)
    assert [(r.name, r.counts.requests) for r in summary.by_tier] == [("large", 2), ("small", 2)]
    assert [(r.name, r.counts.requests) for r in summary.by_key] == [("k1", 3), ("(none)", 1)]
    total = summary.total.counts
    assert (total.requests, total.cost_nanos, total.savings_nanos) == (4, 600, 900)
    assert total.savings_pct == 60.0
    assert summary.total.as_dict()["savings_usd"] == 9e-07
    assert "large" in summary.as_table()
