"""A request's settlement (pricing, ledger, rate limits) survives the client leaving mid-way."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.serving.observer import FinalUsage, RequestObserver


class SlowRecorder:
    """A cost recorder whose ledger write waits until released (a slow Redis)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.settled: list[tuple[str, int, int]] = []

    async def settle(self, *, tier: str, model: str, prompt_tokens: int, completion_tokens: int, **_: Any) -> None:
        await self.release.wait()
        self.settled.append((tier, prompt_tokens, completion_tokens))


async def test_a_finish_cancelled_while_the_ledger_write_waits_still_records_it() -> None:
    recorder = SlowRecorder()
    observer = RequestObserver(recorder=recorder)  # type: ignore[arg-type]
    observation = observer.begin(request_model="router")
    finishing = asyncio.create_task(
        observation.finish(FinalUsage("small", "m", prompt_tokens=3, completion_tokens=2, stream=False))
    )
    await asyncio.sleep(0.01)
    finishing.cancel()  # the client went away while Redis was slow
    with pytest.raises(asyncio.CancelledError):
        await finishing
    recorder.release.set()
    await observer.drain()
    assert recorder.settled == [("small", 3, 2)]


async def test_a_request_settles_once_whichever_way_it_ends() -> None:
    recorder = SlowRecorder()
    recorder.release.set()
    observer = RequestObserver(recorder=recorder)  # type: ignore[arg-type]
    observation = observer.begin(request_model="router")
    observation.finish_later(FinalUsage("small", "m", prompt_tokens=1, completion_tokens=1, stream=True))
    assert await observation.finish(FinalUsage("small", "m", prompt_tokens=9, completion_tokens=9, stream=True)) is None
    observation.finish_later(FinalUsage("small", "m", prompt_tokens=9, completion_tokens=9, stream=True))
    await observer.drain()
    assert recorder.settled == [("small", 1, 1)]
