"""An aiohttp load generator that keeps one :class:`Outcome` per request.

Locust aggregates; a fault needs per-request facts: which requests failed and how, which
were served by another tier than planned (``x-slm-router-reason``), and the exact cost each
client was told (``x-slm-router-cost-usd`` or, for a stream, ``usage.slm_router`` in its
usage chunk), to compare with the ledger. Closed-loop workers, grouped in lanes by kind of
request (routed, named small, named large; streams and non-streams), send back-to-back
requests until the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp

from loadtest.faults.stack import LARGE_MODEL, SMALL_MODEL

__all__ = [
    "EASY_PROMPTS",
    "HARD_PROMPTS",
    "MAX_RETRY_AFTER_S",
    "PROMPTS",
    "Lane",
    "LoadGenerator",
    "Mix",
    "Outcome",
    "RequestSpec",
    "cost_nanos_from_usd",
    "default_mix",
    "finish_stream",
    "only",
    "read_sse_line",
    "retry_after_s",
    "send",
    "warm_up",
]

#: Scores of the shipped router (router_models/artifacts/default) are 0.52 to 0.555 for these:
#: below both the fault stack's threshold (0.56) and the calibrated default (0.580).
EASY_PROMPTS = (
    "What is the capital of France?",
    "Give me a synonym for happy.",
    "Translate 'good morning' into Spanish.",
    "Say hello.",
    "What colour is the sky?",
    "Name three fruits.",
    "Compare the economic policies of Keynes and Hayek and their relevance today.",
)
#: Scores 0.581 to 0.605: above both thresholds, so routed to the large tier.
HARD_PROMPTS = (
    "Explain, step by step, why the sum of the angles of a triangle is 180 degrees.",
    "A train leaves at 3pm going 60 mph; another leaves at 4pm going 80 mph. When does the second catch up?",
    "Summarise the causes of the First World War in three bullet points.",
    "Prove that the square root of 2 is irrational.",
    "Write a Python function that merges two sorted lists and analyse its complexity.",
)
#: Routed traffic: about 40% goes to the large tier.
PROMPTS = EASY_PROMPTS + HARD_PROMPTS

CHAT_PATH = "/v1/chat/completions"
_NANOS = Decimal(10**9)
#: The official openai SDK waits out a ``Retry-After`` of up to 60 s before it retries (a longer
#: one it replaces with its own short backoff); a client of this generator waits at most this long.
MAX_RETRY_AFTER_S = 60.0


def cost_nanos_from_usd(value: str | float) -> int:
    """Exact nano-dollars from a header string (``"0.000001234"``) or a JSON float.

    The gateway's float is the one closest to ``nanos / 1e9``; its shortest repr read as a
    decimal, times 1e9, rounds back to the same integer.
    """
    amount = Decimal(value) if isinstance(value, str) else Decimal(repr(value))
    return int((amount * _NANOS).to_integral_value())


@dataclass(frozen=True)
class RequestSpec:
    """One request to send."""

    model: str
    prompt: str
    stream: bool
    max_tokens: int


@dataclass
class Outcome:
    """What happened to one request (times are ``time.monotonic()`` values)."""

    model: str
    stream: bool
    started: float
    ended: float = 0.0
    status: int | None = None
    #: Exception class, ``stream_error:<code>`` (an in-stream error event), ``truncated``
    #: (no ``[DONE]``) or ``no_cost`` (a 200 without its cost); ``None`` when all is well.
    error: str | None = None
    error_message: str = ""
    tier: str | None = None
    reason: str | None = None
    retry_after: str | None = None
    cost_nanos: int | None = None
    completion_tokens: int | None = None
    first_chunk: float | None = None
    chunks: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """A complete answer with its cost."""
        return self.status == 200 and self.error is None

    @property
    def flagged(self) -> bool:
        """Answered by another tier than routing chose (failover), and the response says so."""
        return self.ok and (self.reason or "").startswith(("fallback:", "escalated:"))

    @property
    def label(self) -> str:
        """``ok`` or how it failed: ``HTTP 503``, ``ServerDisconnectedError``, ``stream_error:...``."""
        if self.ok:
            return "ok"
        if self.error is not None and (self.status is None or self.status == 200):
            return self.error
        return f"HTTP {self.status}"


Mix = Callable[[random.Random], RequestSpec]


def retry_after_s(outcome: Outcome) -> float:
    """Seconds a failed request's ``Retry-After`` asks the client to wait, at most
    :data:`MAX_RETRY_AFTER_S`; 0 for a success, no header, or a value that is not seconds."""
    if outcome.ok or not outcome.retry_after:
        return 0.0
    try:
        seconds = float(outcome.retry_after)
    except ValueError:  # an HTTP date: the gateway never sends one
        return 0.0
    if math.isnan(seconds):
        return 0.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def default_mix(
    small_model: str = SMALL_MODEL,
    large_model: str = LARGE_MODEL,
    *,
    stream_share: float = 0.5,
    small_share: float = 0.15,
    large_share: float = 0.15,
    max_tokens: int = 16,
) -> Mix:
    """Routed requests (``model="router"``) plus named small and large requests; half streams."""

    def pick(rng: random.Random) -> RequestSpec:
        roll = rng.random()
        model = small_model if roll < small_share else large_model if roll < small_share + large_share else "router"
        return RequestSpec(model, rng.choice(PROMPTS), rng.random() < stream_share, max_tokens)

    return pick


def _body(spec: RequestSpec) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": spec.model,
        "messages": [{"role": "user", "content": spec.prompt}],
        "max_tokens": spec.max_tokens,
        "temperature": 0,
    }
    if spec.stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return body


def read_sse_line(line: str, outcome: Outcome) -> bool:
    """Record one SSE line of a chat stream in ``outcome``; True at ``data: [DONE]``."""
    line = line.strip()
    if not line.startswith("data: "):
        return False
    payload = line[6:]
    if payload == "[DONE]":
        return True
    frame = json.loads(payload)
    if "error" in frame:
        error = frame["error"] or {}
        outcome.error = f"stream_error:{error.get('code') or error.get('type')}"
        outcome.error_message = str(error.get("message", ""))[:200]
        return False
    if frame.get("choices"):
        if outcome.first_chunk is None and frame["choices"][0].get("delta", {}).get("content"):
            outcome.first_chunk = time.monotonic()
        outcome.chunks += 1
    usage = frame.get("usage")
    if usage:
        outcome.completion_tokens = usage.get("completion_tokens")
        extension = usage.get("slm_router") or {}
        if "cost_usd" in extension:
            outcome.cost_nanos = cost_nanos_from_usd(extension["cost_usd"])
    return False


def finish_stream(outcome: Outcome, done: bool) -> None:
    """After the last line: a stream without ``[DONE]`` (and no error event) was cut off."""
    if not done and outcome.error is None:
        outcome.error = "truncated"


async def _read_stream(response: aiohttp.ClientResponse, outcome: Outcome) -> None:
    done = False
    async for raw in response.content:
        if read_sse_line(raw.decode(errors="replace"), outcome):
            done = True
            break
    finish_stream(outcome, done)


async def send(session: aiohttp.ClientSession, base_url: str, spec: RequestSpec, timeout_s: float) -> Outcome:
    """Send one request and record everything a fault report needs; never raises (but for cancellation)."""
    outcome = Outcome(model=spec.model, stream=spec.stream, started=time.monotonic())
    try:
        async with session.post(
            base_url + CHAT_PATH, json=_body(spec), timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as response:
            outcome.status = response.status
            outcome.tier = response.headers.get("x-slm-router-tier")
            outcome.reason = response.headers.get("x-slm-router-reason")
            outcome.retry_after = response.headers.get("retry-after")
            if response.status != 200:
                body = await response.text()
                outcome.error_message = body[:300]
            elif spec.stream:
                await _read_stream(response, outcome)
            else:
                data = await response.json()
                header = response.headers.get("x-slm-router-cost-usd")
                outcome.cost_nanos = cost_nanos_from_usd(header) if header is not None else None
                outcome.completion_tokens = (data.get("usage") or {}).get("completion_tokens")
            if outcome.status == 200 and outcome.error is None and outcome.cost_nanos is None:
                outcome.error = "no_cost"
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        outcome.error = type(exc).__name__
        outcome.error_message = str(exc)[:200]
    outcome.ended = time.monotonic()
    return outcome


def only(model: str, *, prompts: tuple[str, ...] = PROMPTS, stream_share: float = 0.5, max_tokens: int = 16) -> Mix:
    """Requests for one model (``"router"`` or a served model name); ``stream_share`` of them streams."""

    def pick(rng: random.Random) -> RequestSpec:
        return RequestSpec(model, rng.choice(prompts), rng.random() < stream_share, max_tokens)

    return pick


@dataclass(frozen=True)
class Lane:
    """``workers`` closed-loop clients drawing their requests from ``mix``.

    Separate lanes keep one kind of traffic from starving another: a client stuck behind a
    slow small-model answer sends no large-model request meanwhile.
    """

    workers: int
    mix: Mix


async def warm_up(base_url: str, small_model: str, large_model: str, timeout_s: float = 180.0) -> list[Outcome]:
    """One request of each kind, so lazy start-up work (router scoring, first generations) is done.

    Faults call this before they snapshot the ledger: a fresh replica's first routed request
    can take seconds, which would otherwise eat a short fault window.
    """
    specs = [
        RequestSpec(model, prompt, stream, 4)
        for model, prompt in (
            ("router", EASY_PROMPTS[0]),
            ("router", HARD_PROMPTS[0]),
            (small_model, EASY_PROMPTS[1]),
            (large_model, EASY_PROMPTS[2]),
        )
        for stream in (False, True)
    ]
    async with aiohttp.ClientSession() as session:
        return list(await asyncio.gather(*(send(session, base_url, spec, timeout_s) for spec in specs)))


class LoadGenerator:
    """Closed-loop load: each worker of each lane sends one request after another.

    With ``honour_retry_after`` a worker whose request failed with a ``Retry-After`` header waits
    that long (at most :data:`MAX_RETRY_AFTER_S`) before its next request, as the openai SDK
    does; without it, a refused client asks again at once, which multiplies an outage's refusals.
    """

    def __init__(
        self,
        base_url: str,
        *,
        concurrency: int = 8,
        mix: Mix | None = None,
        lanes: list[Lane] | None = None,
        timeout_s: float = 180.0,
        think_s: float = 0.0,
        honour_retry_after: bool = False,
        seed: int = 0,
    ) -> None:
        """``lanes`` wins over ``concurrency`` and ``mix`` (one lane)."""
        self.base_url = base_url
        self.lanes = lanes or [Lane(concurrency, mix or default_mix())]
        self.timeout_s = timeout_s
        self.think_s = think_s
        self.honour_retry_after = honour_retry_after
        self._rng = random.Random(seed)
        self.outcomes: list[Outcome] = []

    def _pause_after(self, outcome: Outcome) -> float:
        return max(self.think_s, retry_after_s(outcome) if self.honour_retry_after else 0.0)

    async def run(self, duration_s: float, stop: asyncio.Event | None = None) -> list[Outcome]:
        """Send requests for ``duration_s`` seconds or until ``stop`` is set; requests in flight finish."""
        deadline = time.monotonic() + duration_s
        stopped = stop or asyncio.Event()
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker(mix: Mix) -> None:
                while time.monotonic() < deadline and not stopped.is_set():
                    outcome = await send(session, self.base_url, mix(self._rng), self.timeout_s)
                    self.outcomes.append(outcome)
                    pause = min(self._pause_after(outcome), deadline - time.monotonic())
                    if pause > 0:
                        # A pause ends early when the run is stopped, so a long Retry-After
                        # cannot hold the run open.
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stopped.wait(), pause)

            await asyncio.gather(*(worker(lane.mix) for lane in self.lanes for _ in range(lane.workers)))
        return self.outcomes
