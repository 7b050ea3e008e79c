"""Names of metrics and attributes: OpenTelemetry GenAI semantic conventions where they fit.

Kept as plain strings rather than imports from ``opentelemetry.semconv._incubating``:
the GenAI conventions are still incubating and their Python module paths move between
releases, while the wire names below are what dashboards and backends match on.
"""

from __future__ import annotations

__all__ = [
    "ATTR_ERROR_TYPE",
    "ATTR_FROM_TIER",
    "ATTR_HTTP_METHOD",
    "ATTR_HTTP_ROUTE",
    "ATTR_HTTP_STATUS",
    "ATTR_KEY_ID",
    "ATTR_OPERATION",
    "ATTR_OUTPUT_TYPE",
    "ATTR_PROVIDER",
    "ATTR_REQUEST_MODEL",
    "ATTR_RESPONSE_MODEL",
    "ATTR_ROUTING_REASON",
    "ATTR_STREAM",
    "ATTR_SYSTEM",
    "ATTR_TIER",
    "ATTR_TOKEN_TYPE",
    "ATTR_TO_TIER",
    "ATTR_USAGE_INPUT",
    "ATTR_USAGE_OUTPUT",
    "BUCKETS_DECISION_S",
    "BUCKETS_DURATION_S",
    "BUCKETS_TOKENS",
    "BUCKETS_TTFT_S",
    "METRIC_BASELINE_COST",
    "METRIC_CLIENT_DURATION",
    "METRIC_COMPLETION_TOKENS",
    "METRIC_COST",
    "METRIC_DECISION_DURATION",
    "METRIC_ESCALATIONS",
    "METRIC_FALLBACKS",
    "METRIC_LARGE_SHARE",
    "METRIC_PROMPT_TOKENS",
    "METRIC_REQUESTS",
    "METRIC_SAVINGS",
    "METRIC_SERVER_DURATION",
    "METRIC_TOKEN_USAGE",
    "METRIC_TTFT",
    "OPERATION_CHAT",
]

# --- GenAI semantic conventions -------------------------------------------------------
ATTR_OPERATION = "gen_ai.operation.name"
ATTR_PROVIDER = "gen_ai.provider.name"
#: Deprecated in favour of ``gen_ai.provider.name``; still set because many backends match on it.
ATTR_SYSTEM = "gen_ai.system"
ATTR_REQUEST_MODEL = "gen_ai.request.model"
ATTR_RESPONSE_MODEL = "gen_ai.response.model"
ATTR_TOKEN_TYPE = "gen_ai.token.type"
#: What the client asked the answer to be: ``text`` or ``json`` (``response_format``).
ATTR_OUTPUT_TYPE = "gen_ai.output.type"
ATTR_USAGE_INPUT = "gen_ai.usage.input_tokens"
ATTR_USAGE_OUTPUT = "gen_ai.usage.output_tokens"
ATTR_ERROR_TYPE = "error.type"
ATTR_HTTP_METHOD = "http.request.method"
ATTR_HTTP_ROUTE = "http.route"
ATTR_HTTP_STATUS = "http.response.status_code"
OPERATION_CHAT = "chat"
#: ``/v1/completions``: a prompt continued as plain text.
OPERATION_TEXT_COMPLETION = "text_completion"

#: Histogram of tokens per upstream call, ``gen_ai.token.type`` = input | output.
METRIC_TOKEN_USAGE = "gen_ai.client.token.usage"
#: Duration of one upstream (model) call as the gateway, a GenAI client, sees it.
METRIC_CLIENT_DURATION = "gen_ai.client.operation.duration"
#: Duration of a whole gateway request as the gateway, a GenAI server, sees it.
METRIC_SERVER_DURATION = "gen_ai.server.request.duration"
#: Time until the first token was sent to a streaming client.
METRIC_TTFT = "gen_ai.server.time_to_first_token"

# --- slm-router's own ----------------------------------------------------------------
ATTR_TIER = "slm_router.tier"
ATTR_ROUTING_REASON = "slm_router.routing.reason"
#: A non-secret tenant or API-key id (never the key).
ATTR_KEY_ID = "slm_router.key_id"
ATTR_STREAM = "slm_router.stream"
ATTR_FROM_TIER = "slm_router.from_tier"
ATTR_TO_TIER = "slm_router.to_tier"

METRIC_REQUESTS = "slm_router.requests"
METRIC_PROMPT_TOKENS = "slm_router.prompt_tokens"
METRIC_COMPLETION_TOKENS = "slm_router.completion_tokens"
METRIC_COST = "slm_router.cost_usd"
METRIC_BASELINE_COST = "slm_router.baseline_cost_usd"
#: An up-down counter: an escalation that wasted a small-model call saves a negative amount.
METRIC_SAVINGS = "slm_router.savings_usd"
METRIC_DECISION_DURATION = "slm_router.router.decision.duration"
METRIC_ESCALATIONS = "slm_router.escalations"
METRIC_FALLBACKS = "slm_router.fallbacks"
METRIC_LARGE_SHARE = "slm_router.large_share"

# Bucket boundaries advised by the GenAI conventions.
BUCKETS_TOKENS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
BUCKETS_DURATION_S = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
BUCKETS_TTFT_S = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
#: A router decision is in-process work: sub-millisecond to tens of milliseconds.
BUCKETS_DECISION_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5)
