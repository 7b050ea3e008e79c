"""Builds the slm-router Ray Serve application from a validated config.

``build_app(config)`` is the Python entry point (CLI, tests). ``app_builder(args)`` is
the import path for ``serve run`` and KubeRay's ``serveConfigV2``
(``deployments.app_builder:app_builder`` with ``args: {config_path: ...}``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ray import serve
from ray.serve import Application

from deployments.ingress import GatewayIngress
from deployments.small_model import SmallModelDeployment
from gateway import __version__
from gateway.config import GatewayConfig, RoutingConfig, load_config
from gateway.errors import ConfigError

__all__ = ["INGRESS_NAME", "app_builder", "build_app", "model_deployment_name"]

INGRESS_NAME = "GatewayIngress"


def model_deployment_name(tier_name: str) -> str:
    """Serve deployment name of a self-hosted tier."""
    return f"Model-{tier_name}"


def _version(payload: Any) -> str:
    # Imperative serve.run gives every deployment a random version, so re-running it
    # restarts every replica. A version derived from the constructor arguments lets
    # Serve apply a change confined to user_config in place (reconfigure), as the
    # declarative path (KubeRay's serveConfigV2) does by itself.
    blob = json.dumps({"code": __version__, "args": payload}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _pin_version(deployment: Any, payload: Any) -> Any:
    # A separate internal options() call: it sets the version without touching the set
    # of options the user configured (which Serve honours when it applies the config).
    return deployment.options(version=_version(payload), _internal=True)


def build_app(config: GatewayConfig) -> Application:
    """The whole application: one deployment per self-hosted tier behind one ingress."""
    handles: dict[str, Application] = {}
    for name, tier in config.vllm_tiers().items():
        deployment: Any = serve.deployment(SmallModelDeployment, name=model_deployment_name(name))
        tier_args = tier.model_dump(mode="json")
        configured = deployment.options(**tier.deployment.serve_options())
        handles[name] = _pin_version(configured, tier_args).bind(tier_args)
    ingress_cls = serve.ingress()(GatewayIngress)
    ingress: Any = serve.deployment(ingress_cls, name=INGRESS_NAME)
    # The live routing settings travel only as user_config: changing them reconfigures running
    # replicas instead of redeploying, because the constructor arguments stay the same.
    init_config = config.model_dump(mode="json")
    init_config["routing"] = {k: v for k, v in init_config["routing"].items() if k not in RoutingConfig.LIVE_FIELDS}
    options = {**config.ingress.serve_options(), "user_config": config.routing.live_settings()}
    app: Application = _pin_version(ingress.options(**options), init_config).bind(init_config, handles)
    return app


def app_builder(args: dict[str, Any]) -> Application:
    """Serve's application-builder hook.

    ``args.config_path``: the YAML config (default: the packaged local profile).
    ``args.config_revision``: ignored by the code; bumping it in a RayService makes Serve
    redeploy after the mounted config file changed (the file path itself did not).
    """
    unknown = set(args) - {"config_path", "config_revision"}
    if unknown:
        raise ConfigError(f"unknown application args: {sorted(unknown)}")
    return build_app(load_config(args.get("config_path")))
