from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from ray.serve._private.constants import REPLICA_HEALTH_CHECK_UNHEALTHY_THRESHOLD

from gateway.cli import main
from gateway.config import GatewayConfig, LiteLLMTierConfig, VLLMTierConfig, load_config
from gateway.errors import ConfigError

#: Most seconds of failing health checks before Serve marks a replica whose engine died unhealthy
#: (the old replica's shutdown and the replacement's start come after; stopped after ~8 s measured).
DEAD_ENGINE_GOAL_S = 10.0


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_default_config_is_valid_and_local() -> None:
    config = load_config(None, environ={})
    assert list(config.tiers) == ["small", "large"]
    assert isinstance(config.tiers["small"], VLLMTierConfig)
    large = config.tiers["large"]
    assert isinstance(large, LiteLLMTierConfig) and large.uses_local_stand_in
    assert config.standin_in_use()
    assert config.server.host == "127.0.0.1" and config.server.port == 8000
    assert config.redis.url is None


def test_every_deployment_sets_max_ongoing_requests_explicitly() -> None:
    config = load_config(None, environ={})
    for deployment in (config.ingress, config.tiers["small"].deployment):  # type: ignore[union-attr]
        options = deployment.serve_options()
        assert options["max_ongoing_requests"] > 5
        assert options["num_replicas"] >= 1


def dead_engine_noticed_s(config: GatewayConfig) -> float:
    """Worst case from a vLLM engine's death until Serve marks its replica unhealthy and starts
    a replacement: Serve's consecutive-failure threshold times the slowest model tier's period."""
    models = [tier for tier in config.tiers.values() if isinstance(tier, VLLMTierConfig)]
    return REPLICA_HEALTH_CHECK_UNHEALTHY_THRESHOLD * max(tier.deployment.health_check_period_s for tier in models)


def test_dead_engine_is_replaced_promptly() -> None:
    # Ray's 10 s default period: up to 30 s of checks before Serve even marks the replica unhealthy.
    assert dead_engine_noticed_s(load_config(None, environ={})) <= DEAD_ENGINE_GOAL_S


def test_autoscaling_replaces_num_replicas() -> None:
    config = load_config(None, environ={"SLM_ROUTER__INGRESS__AUTOSCALING": "{min_replicas: 1, max_replicas: 4}"})
    options = config.ingress.serve_options()
    assert "num_replicas" not in options
    assert options["autoscaling_config"]["max_replicas"] == 4


def test_env_overrides_are_typed() -> None:
    config = load_config(
        None,
        environ={
            "SLM_ROUTER__SERVER__PORT": "9123",
            "SLM_ROUTER__TIERS__SMALL__DEPLOYMENT__NUM_GPUS": "1",
            "REDIS_URL": "redis://10.0.0.1:6379/2",
        },
    )
    assert config.server.port == 9123
    assert config.tiers["small"].deployment.num_gpus == 1.0  # type: ignore[union-attr]
    assert config.redis.url == "redis://10.0.0.1:6379/2"


def test_large_model_shortcut_switches_to_hosted_model() -> None:
    config = load_config(None, environ={"SLM_ROUTER_LARGE_MODEL": "gpt-4o"})
    large = config.tiers["large"]
    assert isinstance(large, LiteLLMTierConfig)
    assert large.model == "gpt-4o" and large.served_model_name == "gpt-4o"
    assert large.api_base is None and not large.uses_local_stand_in
    assert not config.standin_in_use()


def test_unknown_key_is_an_error_with_its_path(tmp_path: Path) -> None:
    path = write(
        tmp_path, "server:\n  port: 8000\n  prot: 1\ntiers:\n  small: {kind: vllm, served_model_name: s, typo: 2}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = info.value.message
    assert "server.prot" in message
    assert "tiers.small.vllm.typo" in message
    assert "2 error(s)" in message


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("tiers: {}\n", "at least one tier"),
        (
            "tiers:\n  a: {kind: vllm, served_model_name: x}\n  b: {kind: vllm, served_model_name: x}\n",
            "is used by tiers",
        ),
        ("routing: {default_tier: nope}\ntiers:\n  small: {kind: vllm, served_model_name: s}\n", "default_tier"),
        ("server: {port: 70000}\ntiers:\n  small: {kind: vllm, served_model_name: s}\n", "server.port"),
        (
            "standin: {enabled: false}\ntiers:\n  small: {kind: vllm, served_model_name: s}\n"
            "  large: {kind: litellm, served_model_name: l, model: m, api_base: standin}\n",
            "standin.enabled is false",
        ),
        ("- just\n- a list\n", "top level must be a mapping"),
        ("tiers: [unclosed\n", "invalid YAML"),
    ],
)
def test_invalid_configs(tmp_path: Path, yaml_text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, yaml_text), environ={})
    assert expected in info.value.message


def test_a_vllm_tier_with_a_tool_parser_passes_it_and_its_template_to_its_engine(tmp_path: Path) -> None:
    from deployments.small_model import engine_from_tier

    template = tmp_path / "tools.jinja"
    template.write_text("{{ messages }}")
    tier = VLLMTierConfig(
        served_model_name="s",
        engine_class="tests.unit.test_small_model_deployment:DeadEngine",
        tool_call_parser="hermes",
        chat_template=template,
    )
    assert tier.tool_calling and not tier.model_copy(update={"tool_call_parser": None}).tool_calling
    engine = engine_from_tier(tier)
    assert (engine.kwargs["tool_call_parser"], engine.kwargs["chat_template"]) == ("hermes", str(template))  # type: ignore[attr-defined]
    # Unset, they are not passed, so engine classes without tool calling need not take them.
    plain = engine_from_tier(tier.model_copy(update={"tool_call_parser": None, "chat_template": None}))
    assert not {"tool_call_parser", "chat_template"} & set(plain.kwargs)  # type: ignore[attr-defined]
    # A template file that is not there fails the config at start-up, naming the field.
    text = f"tiers:\n  small: {{kind: vllm, served_model_name: s, chat_template: {tmp_path / 'absent.jinja'}}}\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    assert "tiers.small.vllm.chat_template" in info.value.message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.yaml", environ={})


def test_config_is_immutable() -> None:
    config = load_config(None, environ={})
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type is an implementation detail
        config.server.port = 1  # type: ignore[misc]
    assert isinstance(config, GatewayConfig)


def test_validate_config_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate-config"]) == 0
    assert "OK" in capsys.readouterr().out
    bad = write(tmp_path, "server: {max_body_bytes: 1}\ntiers:\n  small: {kind: vllm, served_model_name: s}\n")
    assert main(["validate-config", str(bad)]) == 2
    assert "server.max_body_bytes" in capsys.readouterr().err


def test_openai_transport_needs_an_openai_protocol_model() -> None:
    tier = LiteLLMTierConfig(served_model_name="gpt", model="openai/gpt-4o", transport="openai")
    assert tier.upstream_model == "gpt-4o"
    with pytest.raises(ValueError, match="openai/<name>"):
        LiteLLMTierConfig(served_model_name="claude", model="anthropic/claude-3", transport="openai")


def test_the_token_cap_field_defaults_by_transport_and_upstream() -> None:
    def tier(**fields: object) -> LiteLLMTierConfig:
        return LiteLLMTierConfig.model_validate({"served_model_name": "big", "model": "openai/gpt-5", **fields})

    # OpenAI's own API takes max_completion_tokens for every model; its reasoning models only that.
    assert tier(transport="openai").token_cap_field == "max_completion_tokens"
    # Other OpenAI-compatible servers may know only max_tokens; litellm renames it where needed.
    assert tier(transport="openai", api_base="http://vllm:8000/v1").token_cap_field == "max_tokens"
    assert tier().token_cap_field == "max_tokens"
    assert tier(max_tokens_param="max_completion_tokens").token_cap_field == "max_completion_tokens"
    with pytest.raises(ValidationError):
        tier(max_tokens_param="max_output_tokens")


def test_model_params_are_declared_per_hosted_tier() -> None:
    def tier(**fields: object) -> LiteLLMTierConfig:
        return LiteLLMTierConfig.model_validate({"served_model_name": "big", "model": "openai/gpt-5", **fields})

    assert tier().model_params == []
    assert tier(model_params=["reasoning_effort", "verbosity"]).model_params == ["reasoning_effort", "verbosity"]
    # A vLLM server behind a hosted tier takes vLLM's sampling extensions.
    assert tier(model_params=["ignore_eos", "top_k"]).model_params == ["ignore_eos", "top_k"]
    for bad, fragment in (
        (["temperature"], "reasoning_effort"),
        (["verbosity", "verbosity"], "each parameter once"),
    ):
        with pytest.raises(ValidationError, match=fragment):
            tier(model_params=bad)
    # The stand-in does not pass them on to the small model it serves.
    with pytest.raises(ValidationError, match="does not pass them on"):
        tier(api_base="standin", model_params=["reasoning_effort"])
    # Nor vLLM's decoding extensions, which a vLLM server behind a hosted tier takes.
    assert tier(vllm_decoding=True).vllm_decoding and not tier().vllm_decoding
    with pytest.raises(ValidationError, match="does not pass them on"):
        tier(api_base="standin", vllm_decoding=True)
    # vLLM tiers have no such field (their chat templates decide).
    with pytest.raises(ValidationError, match="model_params"):
        VLLMTierConfig.model_validate({"served_model_name": "s", "model_params": ["reasoning_effort"]})


def test_a_background_lease_outlasts_two_polls() -> None:
    from gateway.state import ResponseStoreConfig

    assert ResponseStoreConfig().background_lease_s >= 2 * ResponseStoreConfig().background_poll_s
    with pytest.raises(ValidationError, match="at least twice"):
        ResponseStoreConfig(background_poll_s=2.0, background_lease_s=3.0)
