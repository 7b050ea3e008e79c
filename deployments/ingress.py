"""The HTTP ingress deployment: the OpenAI API in front of every tier.

The ASGI app is built per replica (``__serve_build_asgi_app__``) after the serving
objects exist, so routes stay framework-thin and the service logic knows nothing of
Ray or FastAPI. Large-tier calls go through litellm from this replica directly: no
extra handle hop on the hot path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from deployments.handle_engine import DeploymentHandleEngine
from deployments.litellm_engine import LiteLLMChatEngine
from gateway.config import GatewayConfig, LiteLLMTierConfig, RoutingConfig, VLLMTierConfig
from gateway.engine import ChatEngine
from gateway.http import create_http_app
from gateway.routing import ThreadedRouterScorer, ThresholdPolicy, load_scorer
from gateway.serving import ChatCompletionService, HealthService, Tier

__all__ = ["GatewayIngress"]

logger = logging.getLogger(__name__)


class GatewayIngress:
    """Ray Serve replica body of the ingress (wrapped by ``serve.ingress``/``serve.deployment``)."""

    async def __init__(self, config: dict[str, Any], model_handles: dict[str, Any]) -> None:  # type: ignore[misc]
        self._config = GatewayConfig.model_validate(config)
        self._redis: Any = None
        tiers: list[Tier] = []
        engines: dict[str, ChatEngine] = {}
        for name, tier_config in self._config.tiers.items():
            engine: ChatEngine
            if isinstance(tier_config, VLLMTierConfig):
                engine = DeploymentHandleEngine(model_handles[name], tier_config.served_model_name)
                max_tokens = tier_config.default_max_tokens
            else:
                engine = LiteLLMChatEngine(tier_config, api_base=self._api_base(tier_config))
                max_tokens = tier_config.default_max_tokens or 1024
            await engine.start()
            engines[name] = engine
            tiers.append(Tier(name, tier_config.served_model_name, engine, max_tokens, tier_config.timeout_s))
        # The learned router arrives with Serve's user_config (see reconfigure), which Serve
        # applies before the replica takes traffic.
        self._live: dict[str, Any] | None = None
        self._scorer: ThreadedRouterScorer | None = None
        self._chat = ChatCompletionService(
            tiers,
            virtual_model_name=self._config.routing.virtual_model_name,
            default_tier=self._config.routing.default_tier,
            max_tokens_limit=self._config.server.max_tokens_limit,
        )
        checks = {f"tier:{n}": e.check_health for n, e in engines.items() if isinstance(e, DeploymentHandleEngine)}
        if self._config.redis.url:
            import redis.asyncio as aioredis

            self._redis = aioredis.Redis.from_url(self._config.redis.url, socket_timeout=2, socket_connect_timeout=2)
            checks["redis"] = self._ping_redis
        self._started_at = time.time()
        self._health = HealthService(checks, info=self._info)
        self._standin: ChatCompletionService | None = None
        if self._config.standin_in_use():
            backend = self._config.standin.backend_tier
            standin_engine = DeploymentHandleEngine(
                model_handles[backend],
                self._config.standin.served_model_name,
                report_model_as=self._config.standin.served_model_name,
            )
            backend_tier = self._config.tiers[backend]
            assert isinstance(backend_tier, VLLMTierConfig)
            name = self._config.standin.served_model_name
            self._standin = ChatCompletionService(
                [
                    Tier(
                        name,
                        name,
                        standin_engine,
                        backend_tier.default_max_tokens,
                        backend_tier.timeout_s,
                        "local-stand-in",
                    )
                ],
                virtual_model_name=f"{name}-router",
                default_tier=name,
                max_tokens_limit=self._config.server.max_tokens_limit,
            )

    async def _build_policy(self, routing: RoutingConfig) -> ThresholdPolicy:
        scorer = None
        if routing.router_artifact is not None:
            # Loading unpickles nothing and reads a few MB, but keep it off the event loop.
            scorer = await asyncio.to_thread(load_scorer, routing.router_artifact, workers=routing.scoring_threads)
        policy = ThresholdPolicy(list(self._config.tiers), scorer, routing.boundaries(), routing.default_tier)
        old, self._scorer = self._scorer, scorer
        if old is not None:
            old.close()
        logger.info("routing: router=%s threshold=%s", policy.router_name, policy.threshold)
        return policy

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve's live update hook: a new router artifact or threshold loads without a restart."""
        if user_config == self._live:
            return
        routing = self._config.routing.model_copy(update=RoutingConfig.model_validate(user_config).live_settings())
        self._chat.set_policy(await self._build_policy(routing))
        self._live = dict(user_config)

    def _info(self) -> dict[str, Any]:
        policy = self._chat.policy
        return {
            "routing": {
                "router": policy.router_name if policy else None,
                "threshold": policy.threshold if policy else None,
            },
            "replica_started_at": self._started_at,
        }

    def _api_base(self, tier: LiteLLMTierConfig) -> str | None:
        if not tier.uses_local_stand_in:
            return tier.api_base
        server = self._config.server
        host = "127.0.0.1" if server.host in ("0.0.0.0", "::") else server.host
        return f"http://{host}:{server.port}{self._config.standin.route_prefix}/v1"

    async def _ping_redis(self) -> None:
        await self._redis.ping()

    def __serve_build_asgi_app__(self) -> Any:
        app = create_http_app(self._chat, self._health, max_body_bytes=self._config.server.max_body_bytes)
        if self._standin is not None:
            standin_app = create_http_app(
                self._standin,
                HealthService({}),
                max_body_bytes=self._config.server.max_body_bytes,
                title="slm-router local large-model stand-in",
            )
            app.mount(self._config.standin.route_prefix, standin_app)
        return app

    async def check_health(self) -> None:
        """Serve's replica health check: the process is serving (tier health is in /health/ready)."""
