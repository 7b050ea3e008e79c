"""The Grafana dashboard only queries metric names this package actually exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gateway.accounting import Counts, RequestCost, SeriesCounts, SeriesKey
from gateway.telemetry import LedgerCollector, RequestRecord, Telemetry, TelemetryConfig, UpstreamRecord, render_metrics

DASHBOARD = Path(__file__).resolve().parents[3] / "dashboards" / "slm-router.json"


async def exported_sample_names() -> set[str]:
    telemetry = Telemetry(TelemetryConfig(prometheus_replica_metrics=True), environ={}, large_tiers={"large"})
    telemetry.record_request(
        RequestRecord("small", "m", "router", "vllm", duration_s=0.2, time_to_first_token_s=0.05, stream=True,
                      cost=RequestCost(1, 1, 1, 2))
    )  # fmt: skip
    telemetry.record_upstream(UpstreamRecord("small", "vllm", "m", "m", 0.1, 1, 1))
    telemetry.record_routing(0.001, tier="small", reason="r")
    telemetry.record_escalation(from_tier="small", to_tier="large", reason="r")
    telemetry.record_fallback(from_tier="small", to_tier="large", reason="r")
    text = (await render_metrics(None, telemetry)).decode()
    ledger = [SeriesCounts(SeriesKey("small", "m", "k"), Counts(1, 1, 1, 1, 2))]
    families = [*text_string_to_metric_families(text), *LedgerCollector(ledger).collect()]
    telemetry.shutdown()
    return {sample.name for family in families for sample in family.samples}


async def test_dashboard_queries_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    # Label names live in "by (...)" clauses and "{...}" selectors; metric names elsewhere.
    bare = [re.sub(r"\bby \([^)]*\)|\{[^}]*\}", "", expr) for expr in exprs]
    used = {name for expr in bare for name in re.findall(r"\b(?:slm_router|gen_ai)_[a-z0-9_]+", expr)}
    assert "slm_router_ledger_cost_usd_total" in used and "gen_ai_server_request_duration_seconds_bucket" in used
    missing = used - await exported_sample_names()
    assert not missing, f"dashboard queries metrics nobody exports: {sorted(missing)}"
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
