"""A chat request as one tier's engine is asked for it (:class:`~gateway.engine.GenerationRequest`)."""

from __future__ import annotations

import uuid
from typing import Any

from gateway.engine import GenerationRequest
from gateway.protocol import ChatCompletionRequest
from gateway.serving.tiers import Tier

__all__ = ["generation_request"]


def generation_request(request: ChatCompletionRequest, tier: Tier, messages: list[dict[str, Any]]) -> GenerationRequest:
    """What ``tier``'s engine is asked for ``request`` (its ``messages`` in engine form): only
    the tools, model parameters and extensions that tier takes."""
    # Tools that tool_choice "none" declines are dropped for a tier without tool calling
    # (the answer is text either way); a tier with it gets them, as the client sent them,
    # and so does a tier that makes the call tool_choice forces, told which function.
    forced = request.forced_function() if tier.forced_tool_calls and not tier.supports_tools else None
    takes_tools = tier.supports_tools or forced is not None
    offered = request.offered_tools() if takes_tools else {}
    # Named as GenerationRequest's fields: only those this tier's model takes are sent.
    params = {name: value for name, value in request.model_params().items() if name in tier.model_params}
    return GenerationRequest(
        request_id=f"chatcmpl-{uuid.uuid4().hex}",
        messages=messages,
        max_tokens=request.requested_max_tokens() or tier.default_max_tokens,
        n=request.choices(),
        temperature=request.temperature,
        top_p=request.top_p,
        stop=request.stop_sequences(),
        seed=request.seed,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
        user=request.user,
        response_format=request.response_format.for_engine() if request.response_format else None,
        logit_bias=dict(request.logit_bias) if request.logit_bias else None,
        logprobs=bool(request.logprobs),
        top_logprobs=request.top_logprobs or 0,
        tools=offered.get("tools"),
        tool_choice=offered.get("tool_choice"),
        parallel_tool_calls=request.parallel_tool_calls if offered else None,
        forced_function=forced.model_dump(exclude_none=True) if forced is not None else None,
        raw_prompt=request.raw_prompt,
        structured_outputs=request.structured_outputs.for_engine() if request.structured_outputs else None,
        stop_token_ids=request.stop_token_ids or None,
        allowed_token_ids=request.allowed_token_ids or None,
        bad_words=request.bad_words or None,
        **params,
    )
