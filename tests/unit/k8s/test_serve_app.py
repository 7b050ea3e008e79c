"""The RayService's Serve application, built exactly as Serve will build it on the cluster.

The test takes ``serveConfigV2`` from the rendered manifest, writes the gateway config
from the rendered ConfigMap to a file, points ``args.config_path`` at it, sets the
environment the Ray pods get, and runs Serve's own import-and-build path
(``import_attr`` -> ``call_user_app_builder_with_args_if_necessary`` -> ``build_app``).
No Ray cluster is started. The built deployments must then fit the Ray cluster the same
manifest describes: GPUs where GPU replicas go, nothing on the head, enough capacity for
every autoscaling maximum. So the manifests cannot drift away from the code.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray._common.utils import import_attr
from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
from ray.serve._private.build_app import build_app
from ray.serve.schema import ServeDeploySchema

from gateway.accounting import CostCalculator
from gateway.cli import main as slm_router_cli
from gateway.config import ENV_PREFIX, LARGE_API_BASE_ENV, LARGE_MODEL_ENV, GatewayConfig, RoutingConfig, load_config
from tests.unit.k8s.manifests import RayGroup, RenderedOverlay
from tests.unit.test_config import DEAD_ENGINE_GOAL_S, dead_engine_noticed_s

#: Where the manifests mount the gateway config (the ConfigMap key is the file name).
CONFIG_MOUNT = Path("/etc/slm-router")


@dataclass(frozen=True)
class BuiltDeployment:
    """What Serve would deploy for one deployment of the application."""

    name: str
    num_cpus: float
    num_gpus: float
    min_replicas: int
    max_replicas: int
    max_ongoing_requests: int
    target_ongoing_requests: float | None
    user_config: Any
    graceful_shutdown_timeout_s: float
    configured: frozenset[str]


def mounted_config_path(overlay: RenderedOverlay) -> Path:
    """``args.config_path`` of the single application, checked to be on the config mount."""
    (app,) = overlay.serve_config["applications"]
    path = Path(app["args"]["config_path"])
    assert path.parent == CONFIG_MOUNT, path
    return path


def write_mounted_config(overlay: RenderedOverlay, tmp_path: Path) -> Path:
    """The file the pods would see at ``args.config_path``, written under ``tmp_path``."""
    key = mounted_config_path(overlay).name
    local = tmp_path / key
    local.write_text(overlay.config_map_data("slm-router-config")[key], encoding="utf-8")
    return local


def pod_environment(overlay: RenderedOverlay) -> dict[str, str]:
    """The head pod's environment (every Ray container's is the same: test_manifest_policies)."""
    head = overlay.groups[0].ray_container.spec
    return overlay.container_environment(head)


def effective_config(overlay: RenderedOverlay, tmp_path: Path) -> GatewayConfig:
    """The config as the builder in a Ray pod loads it (file + that pod's environment)."""
    return load_config(write_mounted_config(overlay, tmp_path), environ=pod_environment(overlay))


def build_from_manifest(
    overlay: RenderedOverlay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, BuiltDeployment]:
    """Build the application the way Serve's controller does, from the manifest alone."""
    (app,) = overlay.serve_config["applications"]
    args = dict(app["args"])
    args["config_path"] = str(write_mounted_config(overlay, tmp_path))
    # The builder reads os.environ: give it the pods' environment and nothing of ours.
    for key in list(os.environ):
        if key.startswith(ENV_PREFIX) or key in ("REDIS_URL", LARGE_MODEL_ENV, LARGE_API_BASE_ENV):
            monkeypatch.delenv(key)
    for key, value in pod_environment(overlay).items():
        monkeypatch.setenv(key, value)
    application = call_user_app_builder_with_args_if_necessary(import_attr(app["import_path"]), args)
    built_app = build_app(application, name=app["name"])
    built_app.validate_single_fastapi_ingress()
    out: dict[str, BuiltDeployment] = {}
    for deployment in built_app.deployments:
        config = deployment._deployment_config
        options = deployment.ray_actor_options or {}
        autoscaling = config.autoscaling_config
        out[deployment.name] = BuiltDeployment(
            name=deployment.name,
            num_cpus=float(options.get("num_cpus", 1.0)),  # Serve's default is one CPU
            num_gpus=float(options.get("num_gpus", 0.0)),
            min_replicas=autoscaling.min_replicas if autoscaling else int(config.num_replicas),
            max_replicas=autoscaling.max_replicas if autoscaling else int(config.num_replicas),
            max_ongoing_requests=int(config.max_ongoing_requests),
            target_ongoing_requests=autoscaling.target_ongoing_requests if autoscaling else None,
            user_config=config.user_config,
            graceful_shutdown_timeout_s=float(config.graceful_shutdown_timeout_s),
            configured=frozenset(config.user_configured_option_names),
        )
    return out


@pytest.fixture()
def built(overlay: RenderedOverlay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, BuiltDeployment]:
    """The application of each overlay, built from its manifest."""
    return build_from_manifest(overlay, tmp_path, monkeypatch)


def test_serve_config_is_valid_for_serve(overlay: RenderedOverlay) -> None:
    schema = ServeDeploySchema.model_validate(overlay.serve_config)
    (app,) = schema.applications
    assert app.import_path == "deployments.app_builder:app_builder"
    assert app.route_prefix == "/"
    assert schema.http_options.host == "0.0.0.0"


def test_mounted_config_is_a_valid_gateway_config(overlay: RenderedOverlay, tmp_path: Path) -> None:
    path = write_mounted_config(overlay, tmp_path)
    # The same check operators run: `slm-router validate-config FILE`.
    assert slm_router_cli(["validate-config", str(path)]) == 0
    config = effective_config(overlay, tmp_path)
    http = overlay.serve_config["http_options"]
    # The stand-in calls back into the local Serve proxy at server.host:port.
    assert (config.server.host, config.server.port) == (http["host"], http["port"])


def test_replica_start_up_checks_pass(overlay: RenderedOverlay, tmp_path: Path) -> None:
    """What a replica validates when it starts (prices, secrets named by the config) holds."""
    config = effective_config(overlay, tmp_path)
    env = pod_environment(overlay)
    if config.accounting.enabled:
        # Every tier and the baseline must be priced, or the ingress fails to start.
        CostCalculator.from_config(config.accounting, config.tiers)
    if config.state.auth.enabled:
        assert env.get(config.state.auth.admin_key_env, "").startswith("secret:")
        if config.state.auth.pepper_env:
            assert env.get(config.state.auth.pepper_env, "").startswith("secret:")
    if overlay.name == "gpu-prod":
        assert config.state.auth.enabled, "production requires API keys"


def test_config_mount_is_on_every_ray_pod(overlay: RenderedOverlay) -> None:
    """Serve may run the builder, and any replica, on any node: every Ray pod mounts the config."""
    for group in overlay.groups:
        mounts = {m["mountPath"]: m["name"] for m in group.ray_container.spec.get("volumeMounts", [])}
        assert str(CONFIG_MOUNT) in mounts, group.name
        volumes = {v["name"]: v for v in group.pod_spec.get("volumes", [])}
        assert volumes[mounts[str(CONFIG_MOUNT)]]["configMap"]["name"] == "slm-router-config", group.name
        assert "subPath" not in str(group.ray_container.spec.get("volumeMounts")), "subPath mounts never update"


def test_live_routing_override_matches_the_config(overlay: RenderedOverlay, tmp_path: Path) -> None:
    """serveConfigV2's GatewayIngress user_config must say what the mounted config says."""
    (app,) = overlay.serve_config["applications"]
    overrides = {d["name"]: d for d in app.get("deployments", [])}
    assert set(overrides) <= {"GatewayIngress"}
    ingress = overrides["GatewayIngress"]
    # Only the live settings are overridden; every other option has one home: the gateway config.
    assert set(ingress) == {"name", "user_config"}
    live = RoutingConfig.model_validate(ingress["user_config"]).live_settings()
    assert live == effective_config(overlay, tmp_path).routing.live_settings()


def test_built_app_has_the_expected_deployments(
    built: dict[str, BuiltDeployment], overlay: RenderedOverlay, tmp_path: Path
) -> None:
    assert set(built) == {"GatewayIngress", "Model-small"}
    config = effective_config(overlay, tmp_path)
    drains = {
        "GatewayIngress": config.ingress.graceful_shutdown_timeout_s,
        "Model-small": config.tiers["small"].deployment.graceful_shutdown_timeout_s,  # type: ignore[union-attr]
    }
    for deployment in built.values():
        # Ray's default of 5 collapses throughput: always explicit (see gateway/config.py).
        assert "max_ongoing_requests" in deployment.configured, deployment.name
        assert "health_check_period_s" in deployment.configured, deployment.name
        # Serve's 20 s default would cut a generation short when a replica is scaled down.
        assert "graceful_shutdown_timeout_s" in deployment.configured, deployment.name
        assert deployment.graceful_shutdown_timeout_s == drains[deployment.name] > 20, deployment.name
        if deployment.target_ongoing_requests is not None:
            assert deployment.target_ongoing_requests <= deployment.max_ongoing_requests, deployment.name
    assert (
        built["GatewayIngress"].user_config
        == RoutingConfig.model_validate(
            overlay.serve_config["applications"][0]["deployments"][0]["user_config"]
        ).live_settings()
    )


def test_dead_engine_is_replaced_promptly(overlay: RenderedOverlay, tmp_path: Path) -> None:
    assert dead_engine_noticed_s(effective_config(overlay, tmp_path)) <= DEAD_ENGINE_GOAL_S


def test_nothing_is_placed_on_the_head(built: dict[str, BuiltDeployment], overlay: RenderedOverlay) -> None:
    head = overlay.groups[0]
    assert head.start_params["num-cpus"] == "0" and head.start_params["num-gpus"] == "0"
    # Ray places a zero-resource actor on any node, the head included.
    for deployment in built.values():
        assert deployment.num_cpus > 0 or deployment.num_gpus > 0, deployment.name


def _fits(deployment: BuiltDeployment, group: RayGroup) -> bool:
    return deployment.num_cpus <= group.logical_cpus and deployment.num_gpus <= group.gpus


def test_every_replica_fits_a_worker_group(built: dict[str, BuiltDeployment], overlay: RenderedOverlay) -> None:
    for deployment in built.values():
        homes = [g for g in overlay.workers if _fits(deployment, g)]
        assert homes, f"{overlay.name}: no worker group can host one {deployment.name} replica"
        if deployment.num_gpus > 0:
            assert all(g.gpus > 0 for g in homes)


def test_cluster_capacity_covers_every_autoscaling_maximum(
    built: dict[str, BuiltDeployment], overlay: RenderedOverlay
) -> None:
    """At their maxima, all replicas together fit into all worker groups at their maxima."""
    gpu_demand = sum(d.max_replicas * d.num_gpus for d in built.values())
    gpu_supply = sum(g.max_pods * g.gpus for g in overlay.workers)
    assert gpu_demand <= gpu_supply, f"{overlay.name}: GPUs {gpu_demand} > {gpu_supply}"
    # GPU replicas use CPUs of GPU pods; CPU-only replicas cannot use what is left there
    # (test_cpu_only_replicas_stay_off_gpu_pods), so count the two pools apart.
    gpu_groups = [g for g in overlay.workers if g.gpus]
    cpu_groups = [g for g in overlay.workers if not g.gpus]
    gpu_deployments = [d for d in built.values() if d.num_gpus > 0]
    cpu_deployments = [d for d in built.values() if d.num_gpus == 0]
    if gpu_groups:
        assert sum(d.max_replicas * d.num_cpus for d in gpu_deployments) <= sum(
            g.max_pods * g.logical_cpus for g in gpu_groups
        )
        assert sum(d.max_replicas * d.num_cpus for d in cpu_deployments) <= sum(
            g.max_pods * g.logical_cpus for g in cpu_groups
        )
    else:
        assert sum(d.max_replicas * d.num_cpus for d in built.values()) <= sum(
            g.max_pods * g.logical_cpus for g in cpu_groups
        )


def test_cpu_only_replicas_stay_off_gpu_pods(built: dict[str, BuiltDeployment], overlay: RenderedOverlay) -> None:
    """A GPU pod's logical CPUs are all taken by its GPU replicas, so the ingress never lands there."""
    gpu_deployments = [d for d in built.values() if d.num_gpus > 0]
    cpu_deployments = [d for d in built.values() if d.num_gpus == 0]
    for group in (g for g in overlay.workers if g.gpus):
        for model in gpu_deployments:
            per_pod = math.floor(group.gpus / model.num_gpus)
            left = group.logical_cpus - per_pod * model.num_cpus
            assert left >= 0, f"{group.name}: {per_pod} x {model.name} do not fit the pod's CPUs"
            for other in cpu_deployments:
                assert other.num_cpus > left, f"{other.name} could be placed on GPU group {group.name}"


def test_gpu_prod_intent(gpu_prod: RenderedOverlay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One GPU per small-model replica, autoscaled within the GPU group; an HA autoscaled ingress."""
    build = build_from_manifest(gpu_prod, tmp_path, monkeypatch)
    model, ingress = build["Model-small"], build["GatewayIngress"]
    (gpu_group,) = [g for g in gpu_prod.workers if g.gpus]
    assert model.num_gpus == 1 and gpu_group.gpus == 1
    assert model.max_replicas == gpu_group.max_pods, "GPU pods beyond the replica maximum would sit idle"
    assert 1 <= model.min_replicas <= gpu_group.max_pods
    assert gpu_group.spec["minReplicas"] >= math.ceil(model.min_replicas * model.num_gpus / gpu_group.gpus)
    assert ingress.num_gpus == 0 and ingress.min_replicas >= 2
    assert ingress.target_ongoing_requests is not None and model.target_ongoing_requests is not None


def test_cpu_local_has_no_gpu(cpu_local: RenderedOverlay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build = build_from_manifest(cpu_local, tmp_path, monkeypatch)
    assert all(d.num_gpus == 0 for d in build.values())
    assert all(g.gpus == 0 for g in cpu_local.groups)
    assert "nvidia.com/gpu" not in yaml.safe_dump(list(cpu_local.resources))
