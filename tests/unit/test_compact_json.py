"""A vLLM tier decodes constrained JSON compact (``compact_json``), unless told otherwise.

What the engine then writes is checked on the real engine in tests/serve/test_openai_sdk.py.
"""

from __future__ import annotations

import pytest

from deployments.small_model import engine_from_tier
from deployments.vllm_engine import engine_arguments
from gateway.config import VLLMTierConfig

DEAD = "tests.unit.test_small_model_deployment:DeadEngine"


def test_by_default_the_engine_decodes_json_without_whitespace_on_llguidance() -> None:
    args = engine_arguments({"max_model_len": 512}, compact_json=True)
    config = args["structured_outputs_config"]
    assert (config.backend, config.disable_any_whitespace) == ("guidance", True)
    # Objects without "additionalProperties" get only their listed keys (a small model pads them).
    assert config.disable_additional_properties
    assert args["max_model_len"] == 512


def test_turned_off_vllm_keeps_its_own_default() -> None:
    assert "structured_outputs_config" not in engine_arguments({"max_model_len": 512}, compact_json=False)


def test_an_operators_structured_outputs_config_wins_and_is_built_from_its_mapping() -> None:
    # From YAML the config is a mapping, which vLLM's EngineArgs does not convert for this field.
    args = engine_arguments({"structured_outputs_config": {"backend": "xgrammar"}}, compact_json=True)
    config = args["structured_outputs_config"]
    assert (config.backend, config.disable_any_whitespace) == ("xgrammar", False)
    # vLLM's own check holds: compact JSON needs a backend that can write it.
    with pytest.raises(ValueError, match="disable_any_whitespace"):
        engine_arguments(
            {"structured_outputs_config": {"backend": "outlines", "disable_any_whitespace": True}}, compact_json=True
        )


def test_the_tier_setting_reaches_the_engine_only_when_turned_off() -> None:
    tier = VLLMTierConfig(served_model_name="s", engine_class=DEAD)
    assert tier.compact_json
    # Engine classes of the operator's own need not take a setting left at its default.
    assert "compact_json" not in engine_from_tier(tier).kwargs  # type: ignore[attr-defined]
    off = engine_from_tier(tier.model_copy(update={"compact_json": False}))
    assert off.kwargs["compact_json"] is False  # type: ignore[attr-defined]
