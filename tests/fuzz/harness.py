"""The fuzz target: two in-process gateway apps over real Redis and a real OpenAI-style upstream.

The apps live on an event loop in a background thread, so a request that never answers
(or blocks the loop) shows up as a *hang* after ``request_timeout_s`` instead of freezing
the fuzzer. ``open`` has authentication off (bodies reach the parser directly); ``keyed``
has it on and is called with a real API key (so the rate-limit estimate and per-key paths
run too). Both use the shipped learned router, so routing scores every odd prompt.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
import uuid
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from gateway.http import GatewayServices, create_http_app
from gateway.routing import ThresholdPolicy, load_scorer
from gateway.serving.assembly import build_replica_services
from tests.fuzz.bodies import FuzzRequest
from tests.integration.conftest import ADMIN_KEY, gateway_config, make_tiers

__all__ = ["FuzzTarget", "Outcome"]

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    """What came back: ``status`` is ``None`` for a hang, ``crash`` names an exception that escaped the app."""

    status: int | None
    headers: dict[str, str]
    body: bytes
    elapsed_s: float
    crash: str | None = None


class FuzzTarget:
    """Start with :meth:`start`, send with :meth:`send`, stop with :meth:`close`."""

    def __init__(self, redis_url: str, upstream_url: str, *, request_timeout_s: float = 15.0) -> None:
        self.redis_url = redis_url
        self.upstream_url = upstream_url
        self.request_timeout_s = request_timeout_s
        self.max_body_bytes = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fuzz-target", daemon=True)
        self._stack = AsyncExitStack()
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._api_key = ""

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> FuzzTarget:
        """Build both apps and an API key for ``keyed`` (takes a few seconds: litellm's import)."""
        self._thread.start()
        self._run(self._start(), timeout=120)
        return self

    async def _app(self, name: str, auth: bool) -> httpx.AsyncClient:
        config = gateway_config(
            self.redis_url,
            self.upstream_url,
            routing={"router_artifact": "default"},
            state={"prefix": f"fz{name}{uuid.uuid4().hex[:8]}", "auth": {"enabled": auth}},
        )
        self.max_body_bytes = config.server.max_body_bytes
        tiers = await make_tiers(config)
        services = await build_replica_services(config, tiers, environ={"SLM_ROUTER_ADMIN_KEY": ADMIN_KEY})
        self._stack.push_async_callback(services.close)
        # As the ingress does on reconfigure: the learned router scores every routed prompt.
        routing = config.routing
        assert routing.router_artifact is not None
        scorer = await asyncio.to_thread(load_scorer, routing.router_artifact, workers=1)
        self._stack.callback(scorer.close)
        services.chat.set_policy(
            ThresholdPolicy(list(config.tiers), scorer, routing.boundaries(), routing.default_tier)
        )
        app = create_http_app(
            GatewayServices.of(services),
            max_body_bytes=config.server.max_body_bytes,
        )
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway", timeout=self.request_timeout_s
        )
        await self._stack.enter_async_context(client)
        return client

    async def _start(self) -> None:
        self._clients["open"] = await self._app("open", auth=False)
        self._clients["keyed"] = await self._app("keyed", auth=True)
        created = await self._clients["keyed"].post(
            "/admin/keys", json={"name": "fuzz", "tenant": "fuzz"}, headers={"authorization": f"Bearer {ADMIN_KEY}"}
        )
        created.raise_for_status()
        self._api_key = created.json()["key"]

    def _headers(self, request: FuzzRequest) -> dict[str, str]:
        headers = dict(request.headers)
        if request.credential == "admin":
            headers["authorization"] = f"Bearer {ADMIN_KEY}"
        elif request.credential == "wrong":
            headers["authorization"] = f"Bearer {ADMIN_KEY}x"
        elif request.target == "keyed" and "authorization" not in headers:
            headers["authorization"] = f"Bearer {self._api_key}"
        return headers

    async def _send(self, request: FuzzRequest) -> Outcome:
        client = self._clients[request.target]
        started = time.perf_counter()
        try:
            response = await client.request(
                request.method,
                request.path,
                content=request.content,
                headers=self._headers(request),
                params=request.params,
            )
        except Exception as exc:  # noqa: BLE001 - an exception escaping the app is the finding itself
            return Outcome(None, {}, b"", time.perf_counter() - started, crash=f"{type(exc).__name__}: {exc}"[:300])
        return Outcome(response.status_code, dict(response.headers), response.content, time.perf_counter() - started)

    def send(self, request: FuzzRequest) -> Outcome:
        """Send one request; a hang is an :class:`Outcome` with ``status=None`` and no crash."""
        future = asyncio.run_coroutine_threadsafe(self._send(request), self._loop)
        started = time.perf_counter()
        try:
            return future.result(self.request_timeout_s + 5)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return Outcome(None, {}, b"", time.perf_counter() - started)

    async def _shutdown(self) -> None:
        await self._stack.aclose()
        # As asyncio.run does: finish what libraries left running on this loop (litellm's
        # logging worker), so nothing is collected later from a closed loop.
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._loop.shutdown_asyncgens()

    def close(self) -> None:
        """Close the apps and stop the loop thread."""
        try:
            self._run(self._shutdown(), timeout=60)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()
