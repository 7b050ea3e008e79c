"""The real stack on local Ray Serve: vLLM CPU engine with SmolLM2, litellm to local upstreams.

The gateway starts once per session (the engine takes about a minute on 2 cores) with
three tiers: the small vLLM model, a "medium" tier reached through litellm at the
product's own local stand-in, and a "large" tier reached through litellm at a fake
OpenAI-compatible server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

import router_models
from deployments.runtime import LocalGateway
from gateway.config import GatewayConfig, load_config
from tests.conftest import free_port
from tests.fakes.openai_upstream import FakeOpenAIUpstream, hosted_tier_settings


def serve_test_config(upstream_url: str, state_dir: Path) -> GatewayConfig:
    """Default config with test ports, a fake large upstream and the stand-in as a middle tier."""
    base = load_config(None, environ={})
    data = base.model_dump(mode="json")
    data["server"]["port"] = free_port()
    data["server"]["max_body_bytes"] = 64 * 1024
    data["redis"]["state_dir"] = str(state_dir / "redis")
    small = data["tiers"]["small"]
    small["max_model_len"] = 1024
    small["default_max_tokens"] = 32
    small["timeout_s"] = 60
    data["tiers"] = {
        "small": small,
        "medium": {
            "kind": "litellm",
            "served_model_name": "local-large-standin",
            "model": "openai/local-large-standin",
            "api_base": "standin",
            "api_key_env": None,
            "timeout_s": 60,
            "num_retries": 0,
            "default_max_tokens": 16,
        },
        "large": hosted_tier_settings(upstream_url),
    }
    data["accounting"]["prices"] = {
        "small": {"kind": "gpu_hour", "gpu_hour_usd": 2.4, "tokens_per_second": 2000, "utilization": 0.5},
        "medium": {"kind": "per_million", "input_usd_per_million": 0.5, "output_usd_per_million": 1.5},
        "large": {"kind": "litellm", "model": "gpt-4o"},
    }
    # Three tiers need two boundaries; both at the shipped router's calibrated threshold
    # route like the default two-tier setup (small below it, large at or above it).
    threshold = router_models.load_router(router_models.default_artifact_path()).default_threshold
    data["routing"]["thresholds"] = [threshold, threshold]
    return GatewayConfig.model_validate(data)


@pytest.fixture(scope="session")
def gateway(fake_upstream: FakeOpenAIUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGateway]:
    """The running gateway (Redis, Ray, Serve, vLLM) for the whole session."""
    config = serve_test_config(fake_upstream.base_url, tmp_path_factory.mktemp("state"))
    running = LocalGateway(config, num_cpus=4, ready_timeout_s=900).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def base_url(gateway: LocalGateway) -> str:
    """``http://127.0.0.1:<port>``."""
    return gateway.base_url


@pytest.fixture(scope="module")
def client(base_url: str) -> openai.OpenAI:
    """The official openai SDK (sync) against the running Serve app."""
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def aclient(base_url: str) -> openai.AsyncOpenAI:
    """The official openai SDK (async) against the running Serve app."""
    return openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=120)
