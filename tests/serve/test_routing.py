"""``model="router"`` routes by the learned score, and the router reconfigures live."""

from __future__ import annotations

from typing import Any

import httpx

from deployments.runtime import LocalGateway

HARD = (
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her "
    "friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck egg. "
    "How much in dollars does she make every day at the farmers' market?"
)


def chat(base_url: str, content: str) -> httpx.Response:
    body = {"model": "router", "messages": [{"role": "user", "content": content}], "max_tokens": 4}
    response = httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response


def set_threshold(gateway: LocalGateway, threshold: float | None) -> None:
    config = gateway.config
    gateway.redeploy(config.model_copy(update={"routing": config.routing.model_copy(update={"threshold": threshold})}))


def test_router_scores_and_reports_its_decision(base_url: str) -> None:
    response = chat(base_url, "Hi!")
    headers = response.headers
    assert headers["x-slm-router-reason"] == "score"
    score = float(headers["x-slm-router-score"])
    threshold = float(headers["x-slm-router-threshold"])
    assert 0.0 <= score <= 1.0 and 0.0 < threshold < 1.0
    assert "@" in headers["x-slm-router-router"]
    expected_tier = "large" if score >= threshold else "small"
    assert headers["x-slm-router-tier"] == expected_tier
    # A long multi-step word problem scores higher than a greeting.
    assert float(chat(base_url, HARD).headers["x-slm-router-score"]) > score


def readiness(base_url: str) -> dict[str, Any]:
    response = httpx.get(f"{base_url}/health/ready", timeout=10)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_threshold_changes_live_without_restart(gateway: LocalGateway, base_url: str) -> None:
    before = readiness(base_url)
    assert before["routing"]["router"] and before["routing"]["threshold"] is not None
    try:
        set_threshold(gateway, 0.0)
        after = readiness(base_url)
        assert after["routing"]["threshold"] == 0.0
        # Same replica: reconfigured in place, not restarted.
        assert after["replica_started_at"] == before["replica_started_at"]
        low = chat(base_url, "Hi!")
        assert low.headers["x-slm-router-threshold"] == "0.000000"
        assert low.headers["x-slm-router-tier"] == "large"
        assert low.json()["model"] == "fake-large"
        set_threshold(gateway, 1.0)
        high = chat(base_url, HARD)
        assert high.headers["x-slm-router-tier"] == "small"
    finally:
        set_threshold(gateway, None)
