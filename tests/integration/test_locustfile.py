"""The Locust load test, headless, against an in-process gateway served over real loopback HTTP.

The gateway (scripted tiers, the shipped lexical router, a real Redis) is served by uvicorn on
the test's own event loop, because its services are bound to that loop; Locust runs as a
subprocess through ``loadtest/run.sh`` (it monkey-patches the process with gevent).
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from gateway.redis_server import EmbeddedRedis
from gateway.routing import ThresholdPolicy
from gateway.routing.scorer import DEFAULT_ARTIFACT, load_scorer
from gateway.serving.assembly import ReplicaServices
from tests.conftest import free_port
from tests.fakes.engines import ScriptedEngine
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.integration.conftest import AppFactory, flushed_totals, gateway_config

REPO = Path(__file__).resolve().parents[2]
RUN_SH = REPO / "loadtest" / "run.sh"


@asynccontextmanager
async def served(client: httpx.AsyncClient) -> AsyncIterator[str]:
    """Serve the app behind ``make_app``'s client on a loopback port; yields its base URL."""
    transport = client._transport  # make_app exposes its app only through the client's transport
    assert isinstance(transport, httpx.ASGITransport)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(transport.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not serving.done(), "uvicorn exited before it started"
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)


async def run_locust(host: str, out: Path, run_time: str = "6s", **env: str) -> tuple[int, str]:
    """``loadtest/run.sh`` for ``run_time`` with two users of each kind; (exit status, output)."""
    environ = {**os.environ, "LOCUST": str(Path(sys.executable).parent / "locust"), **env}
    process = await asyncio.create_subprocess_exec(
        "bash",
        str(RUN_SH),
        "--host",
        host,
        "--users",
        "4",
        "--spawn-rate",
        "4",
        "--time",
        run_time,
        "--out",
        str(out),
        env=environ,
        cwd=str(REPO.parent),  # anywhere but the repo root: the script must not depend on it
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


async def ledger_totals(services: ReplicaServices) -> tuple[int, Decimal, Decimal]:
    """(requests, cost USD, baseline USD) in this gateway's own ledger."""
    totals = await flushed_totals(services)
    nano = Decimal(10**9)
    return (
        sum(s.counts.requests for s in totals),
        sum((Decimal(s.counts.cost_nanos) for s in totals), Decimal(0)) / nano,
        sum((Decimal(s.counts.baseline_nanos) for s in totals), Decimal(0)) / nano,
    )


def stats_rows(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return {(row["Type"], row["Name"]): row for row in csv.DictReader(fh)}


@pytest.mark.parametrize("api", ["chat", "responses", "completions"])
async def test_headless_run_reports_tiers_ttft_share_and_savings(
    make_app: AppFactory, redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream, tmp_path: Path, api: str
) -> None:
    config = gateway_config(redis_server.url, fake_upstream.base_url)
    # A small delay per piece makes time to first token and stream latency measurable.
    small = ScriptedEngine(["Paris", " is", " the", " answer"], model="small-model", prompt_tokens=40, delay_s=0.005)
    scorer = load_scorer(DEFAULT_ARTIFACT, workers=1)  # the shipped router, at its calibrated threshold
    out = tmp_path / "reports" / "run"
    try:
        async with make_app(config, small=small, scripted_large=True) as (client, services):
            services.chat.set_policy(ThresholdPolicy(["small", "large"], scorer, None, "small"))
            async with served(client) as host:
                status, output = await run_locust(
                    host, out, SLM_ROUTER_LOADTEST_HARD_SHARE="0.5", SLM_ROUTER_LOADTEST_API=api
                )
            ledger = await ledger_totals(services)
    finally:
        scorer.close()
    assert status == 0, output
    assert "slm-router load-test summary" in output
    check_reports(out, ledger, api)


def check_reports(out: Path, ledger: tuple[int, Decimal, Decimal], api: str = "chat") -> None:
    """The CSV, HTML and summary files of a clean run against both tiers, through ``api`` (only
    the small tier completes raw prompts: ``completions`` runs reach it alone)."""
    plain, stream = (api, f"{api}-stream")
    tiers = ("small",) if api == "completions" else ("small", "large")
    for suffix in ("_stats.csv", "_stats_history.csv", "_failures.csv", ".html", "_slm_router.json"):
        assert Path(f"{out}{suffix}").is_file(), suffix

    rows = stats_rows(Path(f"{out}_stats.csv"))
    for key in (
        ("POST", plain),
        ("POST", stream),
        ("TTFT", stream),
        *[(kind, f"tier:{tier}") for kind in (plain, stream) for tier in tiers],
    ):
        assert key in rows, (key, sorted(rows))
        assert int(rows[key]["Request Count"]) > 0, key
    assert all(int(row["Failure Count"]) == 0 for row in rows.values()), rows
    html = Path(f"{out}.html").read_text(encoding="utf-8")
    assert "tier:small" in html and "TTFT" in html and ("tier:large" in html) == ("large" in tiers)
    # The first token of a stream arrives before its last one.
    ttft, whole = rows[("TTFT", stream)], rows[("POST", stream)]
    assert float(ttft["Average Response Time"]) < float(whole["Average Response Time"])
    assert int(ttft["Request Count"]) == int(whole["Request Count"])

    summary: dict[str, Any] = json.loads(Path(f"{out}_slm_router.json").read_text(encoding="utf-8"))
    sent = int(rows[("POST", plain)]["Request Count"]) + int(whole["Request Count"])
    # Only the chosen API was called.
    for other in {"chat", "responses", "completions"} - {api}:
        assert ("POST", other) not in rows and ("POST", f"{other}-stream") not in rows
    assert summary["failures"] == 0 and summary["requests"] == summary["successful"] == sent
    assert summary["settings"]["prompt_origin"] == "routellm"
    assert summary["settings"]["hard_share"] == 0.5 and summary["settings"]["api"] == api
    by_tier = summary["by_tier"]
    assert set(by_tier) == set(tiers) and sum(by_tier.values()) == sent
    assert 0 < summary["large_share"] < 1 if "large" in tiers else summary["large_share"] == 0
    assert summary["large_share"] == by_tier.get("large", 0) / sent
    per_tier_rows = [rows[(kind, f"tier:{tier}")] for kind in (plain, stream) for tier in by_tier]
    assert sum(int(row["Request Count"]) for row in per_tier_rows) == sent
    quality = summary["routing_quality"]
    assert quality["easy"]["requests"] + quality["hard"]["requests"] == sent
    assert quality["easy"]["to_large"] + quality["hard"]["to_large"] == by_tier.get("large", 0)

    # Every request the gateway billed was counted by the load test, to the nano-dollar: the
    # summary sums the cost headers and usage figures the clients received.
    ledger_requests, ledger_cost, ledger_baseline = ledger
    cost = summary["cost"]
    assert ledger_requests == sent == cost["priced_requests"]
    assert Decimal(cost["cost_usd"]) == ledger_cost
    assert Decimal(cost["baseline_usd"]) == ledger_baseline
    assert Decimal(cost["savings_usd"]) == ledger_baseline - ledger_cost > 0


async def test_a_run_whose_requests_fail_exits_non_zero(tmp_path: Path) -> None:
    out = tmp_path / "down"
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens: every request fails
    status, output = await run_locust(nobody, out, "2s", SLM_ROUTER_DATA=str(tmp_path / "absent"))
    assert status == 1, output
    assert "FAIL:" in output and "of chat requests failed" in output
    assert "using built-in prompts" in output
    check_failed_run(out)


def check_failed_run(out: Path) -> None:
    summary = json.loads(Path(f"{out}_slm_router.json").read_text(encoding="utf-8"))
    assert summary["requests"] > 0 and summary["failures"] == summary["requests"]
    assert summary["fail_ratio"] == 1.0 and summary["successful"] == 0 and summary["large_share"] is None
    assert summary["settings"]["prompt_origin"] == "builtin"
    with Path(f"{out}_failures.csv").open(newline="", encoding="utf-8") as fh:
        failures = list(csv.DictReader(fh))
    assert {row["Name"] for row in failures} == {"chat", "chat-stream"}
    assert all("connection error: ConnectionRefusedError" in row["Error"] for row in failures), failures
