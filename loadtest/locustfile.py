"""Locust chat traffic against slm-router: real easy and hard prompts, streams and non-streams,
through ``/v1/chat/completions``, or (``--api responses``) ``/v1/responses``, or (``--api
completions``) ``/v1/completions``, whose raw prompts only the vLLM tiers serve.

Prompts come from the labelled RouteLLM folder (``$SLM_ROUTER_DATA``, default
``../shared/data/routellm``), mixed with a configurable share of hard ones; see
``loadtest/README.md`` for the scenarios, the options and the custom statistics (TTFT,
per-tier latency, large share, savings, easy/hard prompts routed to the large tier).

Run it headless for a bounded time against a local gateway (CSV, HTML and summary JSON):

    loadtest/run.sh --host http://127.0.0.1:8000 --users 8 --time 60s --out loadtest/out/run

Imports nothing heavy (no Ray, litellm, numpy, ``gateway`` or ``router_models``): they do not
belong in a gevent-patched load generator, and would skew its timings.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import gevent
from geventhttpclient.response import HTTPConnectionClosed
from locust import FastHttpUser, between, events, task
from locust.argument_parser import LocustArgumentParser
from locust.contrib.fasthttp import ResponseContextManager
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import CSV_STATS_INTERVAL_SEC

# Locust puts the locustfile's folder and the working directory on sys.path; the repository
# root is added so ``loadtest.*`` imports the same way from anywhere (and as the tests do).
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from loadtest.apis import (  # noqa: E402
    APIS,
    CHAT,
    CHAT_STREAM,
    COMPLETIONS,
    COMPLETIONS_PATH,
    COMPLETIONS_STREAM,
    RESPONSES,
    RESPONSES_PATH,
    RESPONSES_STREAM,
    request_body,
)
from loadtest.prompts import DATASETS, LabelledPrompt, PromptMix, PromptSet, load_prompts  # noqa: E402
from loadtest.stream_read import StreamRead  # noqa: E402
from loadtest.summary import (  # noqa: E402
    HEADER_TIER,
    NO_TIER,
    LatencyStats,
    Tally,
    build_report,
    format_report,
    summary_path,
    write_report,
)

TTFT = "TTFT"
#: Report key of the load generator's counters in a worker's report to the master.
REPORT_KEY = "slm_router"


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _add_arguments(parser: LocustArgumentParser) -> None:
    # Top-level arguments (not a group): only those show in the web UI's start form.
    parser.add_argument(
        "--chat-model", env_var="SLM_ROUTER_LOADTEST_MODEL", default="router", help="model of every request"
    )
    parser.add_argument(
        "--max-tokens", env_var="SLM_ROUTER_LOADTEST_MAX_TOKENS", type=int, default=32, help="max_tokens per request"
    )
    parser.add_argument(
        "--api",
        env_var="SLM_ROUTER_LOADTEST_API",
        choices=sorted(APIS),
        default="chat",
        help="send every request to /v1/chat/completions (chat), /v1/responses (responses) or /v1/completions",
    )
    parser.add_argument(
        "--hard-share",
        env_var="SLM_ROUTER_LOADTEST_HARD_SHARE",
        type=float,
        default=0.3,
        help="share of hard prompts (weak model wrong, strong right) in the mix",
    )
    parser.add_argument(
        "--prompt-seed", env_var="SLM_ROUTER_LOADTEST_SEED", type=int, default=0, help="seed of the prompt schedule"
    )
    parser.add_argument(
        "--data", env_var="SLM_ROUTER_DATA", default="", help="RouteLLM data folder (default ../shared/data/routellm)"
    )
    parser.add_argument(
        "--datasets", env_var="SLM_ROUTER_LOADTEST_DATASETS", default=",".join(DATASETS), help="comma-separated"
    )
    parser.add_argument(
        "--max-prompt-chars",
        env_var="SLM_ROUTER_LOADTEST_MAX_PROMPT_CHARS",
        type=int,
        default=2000,
        help="drop longer prompts (0: keep all)",
    )
    parser.add_argument(
        "--max-fail-ratio",
        env_var="SLM_ROUTER_LOADTEST_MAX_FAIL_RATIO",
        type=float,
        default=0.01,
        help="exit non-zero when more than this share of chat requests fail",
    )
    parser.add_argument(
        "--api-key", env_var="SLM_ROUTER_LOADTEST_API_KEY", default="", is_secret=True, help="Bearer key, if needed"
    )


@dataclass(frozen=True)
class Settings:
    """The run's options (from Locust's parsed options, else the environment's defaults)."""

    model: str = "router"
    max_tokens: int = 32
    api: str = "chat"
    hard_share: float = 0.3
    seed: int = 0
    data: str = ""
    datasets: str = ",".join(DATASETS)
    max_prompt_chars: int = 2000
    max_fail_ratio: float = 0.01
    api_key: str = ""

    @classmethod
    def from_options(cls, options: Any) -> Settings:
        """Read Locust's ``parsed_options`` (``None`` when Locust runs as a library)."""
        if options is None:
            return cls(
                model=os.environ.get("SLM_ROUTER_LOADTEST_MODEL", "router"),
                max_tokens=int(_env_float("SLM_ROUTER_LOADTEST_MAX_TOKENS", 32)),
                api=os.environ.get("SLM_ROUTER_LOADTEST_API", "chat"),
                hard_share=_env_float("SLM_ROUTER_LOADTEST_HARD_SHARE", 0.3),
                seed=int(_env_float("SLM_ROUTER_LOADTEST_SEED", 0)),
                data=os.environ.get("SLM_ROUTER_DATA", ""),
            )
        return cls(
            model=options.chat_model,
            max_tokens=options.max_tokens,
            api=options.api,
            hard_share=options.hard_share,
            seed=options.prompt_seed,
            data=options.data,
            datasets=options.datasets,
            max_prompt_chars=options.max_prompt_chars,
            max_fail_ratio=options.max_fail_ratio,
            api_key=options.api_key,
        )

    def public(self) -> dict[str, Any]:
        """The settings without the secret, for reports."""
        values = asdict(self)
        values["api_key"] = "set" if self.api_key else ""
        return values


class RunState:
    """What the users share: the settings, the prompt schedule and the routing tally."""

    def __init__(self) -> None:
        self.settings = Settings()
        self.prompts: PromptSet | None = None
        self.mix: PromptMix | None = None
        self.tally = Tally()
        self._loaded_for: tuple[str, str, int] | None = None

    def prepare(self, settings: Settings) -> None:
        """Load the prompts (once per data source) and build the seeded schedule afresh.

        Called at start-up and at each test start, so every run (also a re-run from the web
        UI) starts at the top of its schedule.
        """
        changed = settings != self.settings or self.prompts is None
        self.settings = settings
        source = (settings.data, settings.datasets, settings.max_prompt_chars)
        if self.prompts is None or self._loaded_for != source:
            datasets = [d.strip() for d in settings.datasets.split(",") if d.strip()]
            root = Path(settings.data).expanduser() if settings.data else None
            self.prompts = load_prompts(root, datasets, max_chars=settings.max_prompt_chars or None)
            self._loaded_for = source
            if self.prompts.warning:
                print(f"WARNING: {self.prompts.warning}", file=sys.stderr, flush=True)
        easy, hard = self.prompts.of("easy"), self.prompts.of("hard")
        self.mix = PromptMix(easy, hard, hard_share=settings.hard_share, seed=settings.seed)
        if changed:
            print(
                f"slm-router load test: {len(easy)} easy and {len(hard)} hard {self.prompts.origin} prompts, "
                f"hard share {settings.hard_share}, seed {settings.seed}, model {settings.model!r}, "
                f"max_tokens {settings.max_tokens}",
                file=sys.stderr,
                flush=True,
            )

    def next_prompt(self) -> LabelledPrompt:
        """The next prompt of the schedule."""
        if self.mix is None:
            self.prepare(self.settings)
        assert self.mix is not None
        return self.mix.next()

    def report(self, environment: Environment) -> dict[str, Any]:
        """The summary of the run so far (see :func:`loadtest.summary.build_report`)."""
        latencies: dict[str, LatencyStats] = {}
        for (name, method), entry in environment.stats.entries.items():
            done = entry.num_requests > 0
            latencies[f"{method} {name}"] = LatencyStats(
                requests=entry.num_requests,
                failures=entry.num_failures,
                p50_ms=entry.get_response_time_percentile(0.5) if done else None,
                p95_ms=entry.get_response_time_percentile(0.95) if done else None,
                avg_ms=round(entry.avg_response_time, 1) if done else None,
            )
        settings = self.settings.public()
        settings["prompt_origin"] = self.prompts.origin if self.prompts else None
        entries = (CHAT, CHAT_STREAM, RESPONSES, RESPONSES_STREAM, COMPLETIONS, COMPLETIONS_STREAM)
        return build_report(self.tally, latencies, settings=settings, chat_entries=entries)


STATE = RunState()


def _body(prompt: LabelledPrompt, stream: bool) -> dict[str, Any]:
    settings = STATE.settings
    return request_body(settings.api, settings.model, settings.max_tokens, prompt.text, stream)


def _headers(stream: bool) -> dict[str, str]:
    headers = {"Accept": "text/event-stream" if stream else "application/json"}
    if STATE.settings.api_key:
        headers["Authorization"] = f"Bearer {STATE.settings.api_key}"
    return headers


def _error_text(response: ResponseContextManager, body: str | None) -> str:
    # Short, stable messages: Locust groups failures by their text.
    error = getattr(response, "error", None)
    if response.status_code == 0 and error is not None:
        return f"connection error: {type(error).__name__}"
    try:
        message = str(json.loads(body or "")["error"]["message"])
    except (ValueError, KeyError, TypeError):
        message = (body or "")[:80]
    return f"HTTP {response.status_code}: {message[:120]}"


def _sse_lines(response: ResponseContextManager) -> Iterator[tuple[str, int]]:
    """Lines of an event stream as they arrive, with the bytes read so far."""
    # FastResponse.iter_content blocks until a whole chunk_size has arrived, which would hold
    # back the first token; geventhttpclient's readline hands over each line once complete.
    raw = response._response
    read = 0
    while raw is not None:
        try:
            line = raw.readline(b"\n")
        except (HTTPConnectionClosed, OSError):
            return  # closed or timed out mid-stream: the caller sees no [DONE]
        if not line:
            return
        read += len(line)
        yield line.decode("utf-8", errors="replace").rstrip("\r\n"), read


class _ChatUser(FastHttpUser):
    abstract = True
    wait_time = between(0.1, 0.5)
    # CPU-served models under load can take a while; the gateway's own timeouts answer first.
    network_timeout = 180.0
    connection_timeout = 10.0

    def _fire(self, request_type: str, name: str, elapsed_ms: float) -> None:
        self.environment.events.request.fire(
            request_type=request_type,
            name=name,
            response_time=elapsed_ms,
            response_length=0,
            response=None,
            context={},
            exception=None,
        )


class ChatUser(_ChatUser):
    """Non-stream requests; latency also recorded per tier (``chat`` / ``tier:<name>``, or
    ``responses`` / ``tier:<name>`` with ``--api responses``)."""

    weight = int(_env_float("SLM_ROUTER_LOADTEST_CHAT_WEIGHT", 1))

    @task
    def chat(self) -> None:
        prompt = STATE.next_prompt()
        path, name, _ = APIS[STATE.settings.api]
        answer_key = "output" if path == RESPONSES_PATH else "choices"
        with self.client.post(
            path, json=_body(prompt, False), headers=_headers(False), name=name, catch_response=True
        ) as response:
            text = response.text
            if response.status_code != 200:
                response.failure(_error_text(response, text))
                return
            try:
                data = json.loads(text or "")
            except ValueError:
                response.failure("invalid JSON body")
                return
            if not data.get(answer_key) or "usage" not in data:
                response.failure(f"missing {answer_key} or usage")
                return
            elapsed = float(response.request_meta["response_time"])
        tier = response.headers.get(HEADER_TIER) or NO_TIER
        self._fire(name, f"tier:{tier}", elapsed)
        STATE.tally.record_headers(response.headers, prompt.label)


class StreamingChatUser(_ChatUser):
    """Streamed requests: full-stream latency per tier (``chat-stream`` or ``responses-stream``) and TTFT."""

    weight = int(_env_float("SLM_ROUTER_LOADTEST_STREAM_WEIGHT", 1))

    @task
    def chat_stream(self) -> None:
        prompt = STATE.next_prompt()
        path, _, name = APIS[STATE.settings.api]
        started = time.perf_counter()
        with self.client.post(
            path,
            json=_body(prompt, True),
            headers=_headers(True),
            name=name,
            stream=True,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(_error_text(response, response.text))
                return
            read_state = StreamRead(started)
            feed = {RESPONSES_PATH: read_state.responses_event, COMPLETIONS_PATH: read_state.completion_event}.get(
                path, read_state.chat_event
            )
            read = 0
            for line, total in _sse_lines(response):
                read = total
                if not line.startswith("data:"):
                    continue  # Responses streams also send "event:" lines; their data repeats the type
                payload = line[5:].strip()
                if payload == "[DONE]":
                    read_state.done = True
                    continue
                try:
                    # Decimal keeps the usage's USD figures exactly as the gateway wrote them.
                    event = json.loads(payload, parse_float=Decimal)
                except ValueError:
                    read_state.problem = "invalid JSON event"
                    continue
                feed(event)
            # Locust timed only the headers of a stream; report the whole stream instead.
            elapsed = (time.perf_counter() - started) * 1000
            response.request_meta["response_time"] = elapsed
            response.request_meta["response_length"] = read
            problem = read_state.problem
            if problem is None and not read_state.done:
                problem = (
                    "stream did not end with a response" if path == RESPONSES_PATH else "stream did not end with [DONE]"
                )
            if problem is None and read_state.usage is None:
                problem = "no usage chunk"
            if problem is not None:
                response.failure(problem)
                return
        usage = read_state.usage
        assert usage is not None
        tier = response.headers.get(HEADER_TIER) or NO_TIER
        if read_state.ttft_ms is not None:
            self._fire(TTFT, name, read_state.ttft_ms)
        self._fire(name, f"tier:{tier}", elapsed)
        cost = usage.get("slm_router") or {}
        STATE.tally.record(
            tier=tier,
            label=prompt.label,
            cost=cost.get("cost_usd"),
            baseline=cost.get("baseline_usd"),
            savings=cost.get("savings_usd"),
        )


def _on_init(environment: Environment, **_: Any) -> None:
    if not isinstance(environment.runner, MasterRunner):
        # Fail at start-up, not in the first request, when the data are unreadable.
        STATE.prepare(Settings.from_options(environment.parsed_options))
    app = environment.web_ui.app if environment.web_ui is not None else None
    if app is not None:
        # The summary so far, as JSON, beside Locust's own pages: GET /slm-router.

        def _slm_router_summary() -> dict[str, Any]:
            return STATE.report(environment)

        app.add_url_rule("/slm-router", "slm_router_summary", _slm_router_summary)


def _on_test_start(environment: Environment, **_: Any) -> None:
    STATE.tally = Tally()
    if not isinstance(environment.runner, MasterRunner):
        STATE.prepare(Settings.from_options(environment.parsed_options))
    else:
        STATE.settings = Settings.from_options(environment.parsed_options)


def _on_reset_stats() -> None:
    STATE.tally = Tally()


def _on_report_to_master(client_id: str, data: dict[str, Any]) -> None:
    data[REPORT_KEY] = STATE.tally.as_dict()
    STATE.tally = Tally()


def _on_worker_report(client_id: str, data: dict[str, Any]) -> None:
    if REPORT_KEY in data:
        STATE.tally.merge(Tally.from_dict(data[REPORT_KEY]))


def _write_summary(environment: Environment, *, show: bool) -> dict[str, Any]:
    report = STATE.report(environment)
    if show:
        print(format_report(report), flush=True)
    options = environment.parsed_options
    path = summary_path(getattr(options, "csv_prefix", None))
    if path is not None:
        write_report(report, path)
        if show:
            print(f"summary written to {path}", flush=True)
    return report


def _on_test_stop(environment: Environment, **_: Any) -> None:
    if not isinstance(environment.runner, WorkerRunner):
        _write_summary(environment, show=True)


def _on_quitting(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return
    if getattr(environment.parsed_options, "csv_prefix", None):
        # Locust rewrites its CSV files every CSV_STATS_INTERVAL_SEC and not at exit, so the
        # requests of the last interval would be missing; let its writer make one more pass.
        gevent.sleep(CSV_STATS_INTERVAL_SEC + 0.25)
    # Rewritten here so a master's file holds the workers' last reports too.
    report = _write_summary(environment, show=False)
    ratio = report["fail_ratio"]
    if report["requests"] == 0:
        print("FAIL: no chat request completed", file=sys.stderr, flush=True)
        environment.process_exit_code = 1
    elif ratio is not None and ratio > STATE.settings.max_fail_ratio:
        print(
            f"FAIL: {ratio:.2%} of chat requests failed (limit {STATE.settings.max_fail_ratio:.2%})",
            file=sys.stderr,
            flush=True,
        )
        environment.process_exit_code = 1
    elif environment.runner is not None and not environment.runner.exceptions:
        # Within the failure budget: succeed although some requests failed (Locust's default is 1).
        environment.process_exit_code = 0


def _listen(hook: Any, handler: Callable[..., None]) -> None:
    # Locust's EventHook is untyped; registering through Any keeps the handlers type-checked.
    hook.add_listener(handler)


_listen(events.init_command_line_parser, _add_arguments)
_listen(events.init, _on_init)
_listen(events.test_start, _on_test_start)
_listen(events.reset_stats, _on_reset_stats)
_listen(events.report_to_master, _on_report_to_master)
_listen(events.worker_report, _on_worker_report)
_listen(events.test_stop, _on_test_stop)
_listen(events.quitting, _on_quitting)
