"""``model="router"`` routes by the learned score, and the router reconfigures live."""

from __future__ import annotations

from typing import Any

import httpx

from deployments.runtime import LocalGateway
from tests.fakes.openai_upstream import UpstreamBehaviour

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


def set_thresholds(gateway: LocalGateway, thresholds: list[float]) -> None:
    config = gateway.config
    routing = config.routing.model_copy(update={"thresholds": thresholds})
    gateway.redeploy(config.model_copy(update={"routing": routing}))


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
    original = list(gateway.config.routing.thresholds or [])
    try:
        set_thresholds(gateway, [0.0, 0.0])
        after = readiness(base_url)
        assert after["routing"]["threshold"] == 0.0
        # Same replica: reconfigured in place, not restarted.
        assert after["replica_started_at"] == before["replica_started_at"]
        low = chat(base_url, "Hi!")
        assert low.headers["x-slm-router-threshold"] == "0.000000"
        assert low.headers["x-slm-router-tier"] == "large"
        assert low.json()["model"] == "fake-large"
        set_thresholds(gateway, [1.0, 1.0])
        high = chat(base_url, HARD)
        assert high.headers["x-slm-router-tier"] == "small"
    finally:
        set_thresholds(gateway, original)


def test_prompt_over_small_context_escalates(base_url: str) -> None:
    long_prompt = "Please summarise this. " + "The quick brown fox jumps over the lazy dog. " * 150
    body = {"model": "router", "messages": [{"role": "user", "content": long_prompt}], "max_tokens": 4}
    response = httpx.post(
        f"{base_url}/v1/chat/completions", json=body, headers={"x-slm-router-threshold": "1.0"}, timeout=60
    )
    assert response.status_code == 200, response.text
    # The stand-in (medium) runs on the same small engine, so it overflows too: the
    # request climbs to the large tier.
    assert response.headers["x-slm-router-reason"].startswith("escalated:")
    assert response.headers["x-slm-router-tier"] == "large"
    assert response.json()["model"] == "fake-large"


def test_large_failure_falls_back_flagged(base_url: str, upstream_behaviour: UpstreamBehaviour) -> None:
    upstream_behaviour.fail_status = 500
    body = {"model": "router", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "stream": True}
    with httpx.stream(
        "POST", f"{base_url}/v1/chat/completions", json=body, headers={"x-slm-router-threshold": "0"}, timeout=60
    ) as response:
        assert response.status_code == 200
        assert response.headers["x-slm-router-reason"] == "fallback:error"
        assert response.headers["x-slm-router-tier"] == "medium"
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert upstream_behaviour.requests  # the large tier was tried first
