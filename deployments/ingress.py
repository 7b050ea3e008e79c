"""The HTTP ingress deployment: the OpenAI API in front of every tier.

The ASGI app is built per replica (``__serve_build_asgi_app__``) after the serving
objects exist, so routes stay framework-thin and the service logic knows nothing of
Ray or FastAPI. Large-tier calls go through litellm from this replica directly and the
router scores in this replica's threads: no extra handle hop on the hot path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from deployments.handle_engine import DeploymentHandleEngine
from deployments.hosted_engine import build_hosted_engine
from deployments.replica_watch import ReplicaWatch
from gateway.config import GatewayConfig, LiteLLMTierConfig, RoutingConfig, VLLMTierConfig
from gateway.engine import ChatEngine
from gateway.http import GatewayServices, create_http_app
from gateway.http.open_requests import OpenRequests
from gateway.protocol.model_params import VLLM_PARAMS
from gateway.routing import ThreadedRouterScorer, ThresholdPolicy, load_scorer
from gateway.serving import HealthCheck, Tier
from gateway.serving.assembly import ReplicaServices, build_replica_services

__all__ = ["GatewayIngress"]

logger = logging.getLogger(__name__)


def _replica_id() -> str | None:
    try:
        from ray import serve

        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # noqa: BLE001 - outside Serve (tests) there is no replica context
        return None


class GatewayIngress:
    """Ray Serve replica body of the ingress (wrapped by ``serve.ingress``/``serve.deployment``)."""

    async def __init__(self, config: dict[str, Any], model_handles: dict[str, Any]) -> None:  # type: ignore[misc]
        self._config = GatewayConfig.model_validate(config)
        self._started_at = time.time()
        tiers: list[Tier] = []
        checks: dict[str, HealthCheck] = {}
        for name, tier_config in self._config.tiers.items():
            engine: ChatEngine
            if isinstance(tier_config, VLLMTierConfig):
                handle = model_handles[name]
                handle_engine = DeploymentHandleEngine(
                    handle, tier_config.served_model_name, watch=self._replica_watch(handle, tier_config)
                )
                checks[f"tier:{name}"] = handle_engine.check_health
                engine, max_tokens = handle_engine, tier_config.default_max_tokens
                tools, forced_calls = tier_config.tool_calling, tier_config.forced_tool_calls
                model_params: frozenset[str] = VLLM_PARAMS
                vllm_decoding = True
            else:
                engine = build_hosted_engine(tier_config, api_base=self._api_base(tier_config))
                max_tokens = tier_config.default_max_tokens or 1024
                tools, forced_calls = tier_config.tool_calling, False  # tool calling covers forced calls
                model_params = frozenset(tier_config.model_params)
                vllm_decoding = tier_config.vllm_decoding
            await engine.start()
            tiers.append(
                Tier(
                    name,
                    tier_config.served_model_name,
                    engine,
                    max_tokens,
                    tier_config.timeout_s,
                    supports_tools=tools,
                    forced_tool_calls=forced_calls,
                    billed_when_abandoned=not isinstance(tier_config, VLLMTierConfig),
                    model_params=model_params,
                    completes_text=isinstance(tier_config, VLLMTierConfig),
                    constrains_decoding=vllm_decoding,
                )
            )
        # The learned router arrives with Serve's user_config (see reconfigure), which Serve
        # applies before the replica takes traffic.
        self._live: dict[str, Any] | None = None
        self._scorer: ThreadedRouterScorer | None = None
        self._services: ReplicaServices = await build_replica_services(
            self._config, tiers, hard_checks=checks, instance_id=_replica_id(), health_info=self._info
        )
        self._open_requests = OpenRequests(_replica_id())
        self._standin: ReplicaServices | None = None
        if self._config.standin_in_use():
            self._standin = await self._build_standin()

    @staticmethod
    def _replica_watch(handle: Any, tier: VLLMTierConfig) -> ReplicaWatch | None:
        # Outside a Serve replica (in-process tests) there is no controller to ask; with
        # scale-to-zero a queued request is what starts a replica, so it must not be refused.
        if _replica_id() is None or tier.deployment.scales_to_zero:
            return None
        return ReplicaWatch(handle.app_name, handle.deployment_name)

    async def _build_standin(self) -> ReplicaServices:
        standin = self._config.standin
        backend = self._config.tiers[standin.backend_tier]
        assert isinstance(backend, VLLMTierConfig)
        handle = self._services.chat.tiers[standin.backend_tier].engine
        assert isinstance(handle, DeploymentHandleEngine)
        name = standin.served_model_name
        engine = handle.relabelled(name)
        # The stand-in is an upstream of this gateway, not a client-facing service: no
        # auth, no shared state and no accounting (the large tier's call is accounted).
        config = self._config.model_copy(
            update={
                "tiers": {name: backend.model_copy(update={"served_model_name": name})},
                "routing": RoutingConfig(default_tier=name, router_artifact=None, virtual_model_name=f"{name}-router"),
                "redis": self._config.redis.model_copy(update={"url": None}),
            }
        )
        tier = Tier(name, name, engine, backend.default_max_tokens, backend.timeout_s, "local-stand-in")
        return await build_replica_services(config, [tier], account=False)

    async def _build_policy(self, routing: RoutingConfig) -> ThresholdPolicy:
        scorer = None
        if routing.router_artifact is not None:
            # Loading reads a few MB and builds models: keep it off the event loop.
            scorer = await asyncio.to_thread(load_scorer, routing.router_artifact, workers=routing.scoring_threads)
        policy = ThresholdPolicy(list(self._config.tiers), scorer, routing.boundaries(), routing.default_tier)
        old, self._scorer = self._scorer, scorer
        if old is not None:
            old.close()
        logger.info("routing: router=%s thresholds=%s", policy.router_name, policy.thresholds)
        return policy

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve's live update hook: a new router artifact or threshold loads without a restart."""
        if user_config == self._live:
            return
        routing = self._config.routing.model_copy(update=RoutingConfig.model_validate(user_config).live_settings())
        self._services.chat.set_policy(await self._build_policy(routing))
        self._live = dict(user_config)

    def _info(self) -> dict[str, Any]:
        policy = self._services.chat.policy if hasattr(self, "_services") else None
        return {
            "routing": {
                "router": policy.router_name if policy else None,
                "threshold": policy.threshold if policy else None,
                "thresholds": policy.thresholds if policy else [],
            },
            "replica_started_at": self._started_at,
        }

    def _api_base(self, tier: LiteLLMTierConfig) -> str | None:
        if not tier.uses_local_stand_in:
            return tier.api_base
        server = self._config.server
        host = "127.0.0.1" if server.host in ("0.0.0.0", "::") else server.host
        return f"http://{host}:{server.port}{self._config.standin.route_prefix}/v1"

    def __serve_build_asgi_app__(self) -> Any:
        limit = self._config.server.max_body_bytes
        services = GatewayServices.of(self._services, open_requests=self._open_requests)
        app = create_http_app(services, max_body_bytes=limit)
        if self._standin is not None:
            # Not counted and never refused while draining: the large tier's calls in flight
            # come back through it.
            standin_app = create_http_app(
                GatewayServices.of(self._standin, operator_routes=False),
                max_body_bytes=limit,
                title="slm-router local large-model stand-in",
            )
            app.mount(self._config.standin.route_prefix, standin_app)
        return app

    async def drain(self, timeout_s: float) -> tuple[str, int]:
        """Answer new API requests with 503 from now on and wait for the open ones to finish.

        Called on every replica before the application is deleted (``LocalGateway.stop``).
        Returns this replica's id and how many requests were still open at ``timeout_s``.
        """
        left = await self._open_requests.drain(timeout_s)
        return self._open_requests.replica, left

    async def check_health(self) -> None:
        """Serve's replica health check: the process is serving (tier health is in /health/ready)."""

    async def __del__(self) -> None:
        services = getattr(self, "_services", None)  # absent when the constructor failed
        if services is not None:
            await services.close()
