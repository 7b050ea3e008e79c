"""Secrets never leak: not into responses, logs, traces, metrics, the admin API or Redis.

One in-process replica runs with authentication on and distinctive secrets everywhere a
secret goes: an API key it creates, the upstream key (through ``api_key_env``), the admin
credential, the key pepper and the Redis password (Redis runs with ``requirepass``). A
second replica is given a *wrong* Redis password. Requests then go through every path
that handles a secret or an error: good, wrong and revoked keys, a wrong admin credential,
an upstream that echoes our credential back in its error bodies (before and in the middle
of a stream), and every admin read. Everything observable is captured (response bodies
and headers, log records of every logger including litellm's at DEBUG, stdout/stderr,
span attributes/events, OpenTelemetry metrics, the Prometheus text, and every value
stored in Redis) and searched for each secret and for its first 12 characters.

Two places legitimately carry a secret and are left out of the search: the body of
``POST /admin/keys`` (the new key is shown once, by design) and what the gateway sends to
its upstream (the upstream key is the credential for it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.redis_server import EmbeddedRedis
from gateway.state.api_keys import KEY_PREFIX
from tests.conftest import free_port
from tests.integration.conftest import AppFactory, gateway_config

CHAT = "/v1/chat/completions"
UPSTREAM_KEY_ENV = "SLM_SECRETS_TEST_UPSTREAM_KEY"
#: litellm logs through these (and does not propagate to the root logger).
LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm")


# --- an upstream that echoes whatever credential it is sent -------------------------------


@dataclass
class EchoBehaviour:
    """``mode``: ``ok``, ``reject`` (401), ``fail`` (500), ``bad`` (400) or ``stream_break``."""

    mode: str = "ok"
    seen_authorization: list[str] = field(default_factory=list)


def _echo_app(behaviour: EchoBehaviour) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        authorization = request.headers.get("authorization", "")
        behaviour.seen_authorization.append(authorization)
        everything = json.dumps(dict(request.headers))
        if behaviour.mode == "reject":  # OpenAI's own 401 quotes the key it was sent
            message = f"Incorrect API key provided: {authorization.removeprefix('Bearer ')}"
            return JSONResponse(_error(message, "invalid_api_key"), status_code=401)
        if behaviour.mode in ("fail", "bad"):
            status = 500 if behaviour.mode == "fail" else 400
            return JSONResponse(_error(f"upstream broke; request headers were {everything}", None), status)
        created = int(time.time())
        if not body.get("stream"):
            return {
                "id": "chatcmpl-echo",
                "object": "chat.completion",
                "created": created,
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            }

        async def frames() -> AsyncIterator[str]:
            base = {
                "id": "chatcmpl-echo",
                "object": "chat.completion.chunk",
                "created": created,
                "model": body["model"],
            }
            yield f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': {'content': 'ok'}}]})}\n\n"
            if behaviour.mode == "stream_break":
                yield f"data: {json.dumps(_error(f'stream broke; headers were {everything}', None))}\n\n"
                return
            yield f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': {}, 'finish_reason': 'stop'}]})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(frames(), media_type="text/event-stream")

    return app


def _error(message: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[tuple[str, EchoBehaviour]]:
    behaviour = EchoBehaviour()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(_echo_app(behaviour), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "echo upstream did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/v1", behaviour
    server.should_exit = True
    thread.join(timeout=10)


# --- the secrets and what is captured -------------------------------------------------------


@dataclass
class Secrets:
    upstream_key: str = field(default_factory=lambda: f"sk-{secrets.token_hex(24)}")
    admin_key: str = field(default_factory=lambda: secrets.token_hex(24))
    pepper: str = field(default_factory=lambda: secrets.token_hex(24))
    redis_password: str = field(default_factory=lambda: secrets.token_hex(24))
    wrong_redis_password: str = field(default_factory=lambda: secrets.token_hex(24))
    wrong_admin_key: str = field(default_factory=lambda: secrets.token_hex(24))
    #: The secret half of a syntactically valid key that does not exist.
    wrong_key_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    #: Filled in once the gateway has created the key.
    api_key: str = ""

    def needles(self) -> dict[str, str]:
        """What must not appear anywhere: each secret and its first 12 characters.

        For the API key that is its secret half: ``sk-slm-<id>-`` is the public key id,
        listed by the admin API on purpose.
        """
        api_secret = self.api_key[len(KEY_PREFIX) + 17 :]
        values = {
            "upstream key": self.upstream_key,
            "admin credential": self.admin_key,
            "key pepper": self.pepper,
            "redis password": self.redis_password,
            "wrong redis password": self.wrong_redis_password,
            "wrong admin credential": self.wrong_admin_key,
            "presented unknown key": self.wrong_key_secret,
            "api key": self.api_key,
            "api key secret": api_secret,
        }
        needles = {}
        for name, value in values.items():
            assert len(value) >= 32, name
            needles[name] = value
            needles[f"{name} (first 12)"] = value[:12]
        return needles


@dataclass
class Capture:
    """Named pieces of text gathered during the run."""

    pieces: list[tuple[str, str]] = field(default_factory=list)

    def add(self, where: str, text: str) -> None:
        self.pieces.append((where, text))

    def add_response(self, label: str, response: httpx.Response) -> None:
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        self.add(f"{label} -> {response.status_code}", f"{headers}\n\n{response.text}")

    def hits(self, needle: str) -> list[str]:
        """Where ``needle`` occurs, each with the text just before it (to find the culprit)."""
        found = []
        for where, text in self.pieces:
            at = text.find(needle)
            if at >= 0:
                found.append(f"{where}: ...{text[max(0, at - 200) : at]}")
        return found


@pytest.fixture()
def secret_values() -> Secrets:
    return Secrets()


@pytest.fixture()
def protected_redis(tmp_path: Path, secret_values: Secrets) -> Iterator[tuple[EmbeddedRedis, str]]:
    """A Redis that needs a password, and the URL that carries it."""
    server = EmbeddedRedis(tmp_path / "redis", persist=False)
    server.start()
    admin = redis.Redis.from_url(server.url)
    admin.config_set("requirepass", secret_values.redis_password)
    admin.close()
    yield server, server.url.replace("redis://", f"redis://:{secret_values.redis_password}@")
    server.stop()


def _all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    previous = {}
    for name in LITELLM_LOGGERS:
        logger = logging.getLogger(name)
        previous[name] = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(caplog.handler)
    try:
        yield
    finally:
        for name in LITELLM_LOGGERS:
            logger = logging.getLogger(name)
            logger.removeHandler(caplog.handler)
            logger.setLevel(previous[name])


@pytest.fixture()
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every log record at DEBUG, litellm's non-propagating loggers included, into caplog."""
    yield from _all_logs(caplog)


def _format_record(record: logging.LogRecord) -> str:
    text = f"{record.name} {record.levelname} {record.getMessage()}"
    if record.exc_info:
        text += "\n" + logging.Formatter().formatException(record.exc_info)
    return text


def _redis_dump(url: str) -> str:
    """Every key and value in the protected Redis, as text."""
    client = redis.Redis.from_url(url, decode_responses=False)
    lines = []
    try:
        for key in client.scan_iter(count=1000):
            raw_kind = client.type(key)
            kind = raw_kind.decode() if isinstance(raw_kind, bytes) else str(raw_kind)
            value: Any
            if kind == "string":
                value = client.get(key)
            elif kind == "hash":
                value = client.hgetall(key)
            elif kind == "set":
                value = client.smembers(key)
            elif kind == "zset":
                value = client.zrange(key, 0, -1, withscores=True)
            elif kind == "list":
                value = client.lrange(key, 0, -1)
            elif kind == "stream":
                value = client.xrange(key)
            else:
                value = kind
            lines.append(f"{key!r} {kind} {value!r}")
    finally:
        client.close()
    return "\n".join(lines)


# --- the test -------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["litellm", "openai"])
async def test_no_secret_leaks_anywhere(
    transport: str,
    make_app: AppFactory,
    protected_redis: tuple[EmbeddedRedis, str],
    echo_upstream: tuple[str, EchoBehaviour],
    secret_values: Secrets,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    all_logs: None,
) -> None:
    _server, redis_url = protected_redis
    upstream_url, behaviour = echo_upstream
    behaviour.mode = "ok"
    monkeypatch.setenv(UPSTREAM_KEY_ENV, secret_values.upstream_key)
    spans = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    large = {
        "kind": "litellm",
        "served_model_name": "fake-large",
        "model": "openai/fake-large",
        "api_base": upstream_url,
        "api_key_env": UPSTREAM_KEY_ENV,
        "timeout_s": 3,
        "num_retries": 0,
        "transport": transport,
    }
    config = gateway_config(
        redis_url,
        upstream_url,
        tiers={"large": large},
        state={"prefix": f"sec{uuid.uuid4().hex[:8]}", "auth": {"enabled": True}},
        telemetry={"prometheus_replica_metrics": True},
    )
    environ = {"SLM_ROUTER_ADMIN_KEY": secret_values.admin_key, "SLM_ROUTER_KEY_PEPPER": secret_values.pepper}
    admin = {"authorization": f"Bearer {secret_values.admin_key}"}
    capture = Capture()

    async with make_app(
        config, environ=environ, metric_readers=[reader], span_processors=[SimpleSpanProcessor(spans)]
    ) as (client, services):

        async def call(label: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
            response: httpx.Response = await client.request(method, path, **kwargs)
            capture.add_response(label, response)
            return response

        created = await client.post("/admin/keys", json={"name": "app", "tenant": "acme"}, headers=admin)
        assert created.status_code == 201 and created.headers["cache-control"] == "no-store"
        secret_values.api_key = created.json()["key"]
        key_id = created.json()["key_id"]
        auth = {"authorization": f"Bearer {secret_values.api_key}"}
        body = {"model": "router", "messages": [{"role": "user", "content": "hello"}]}
        large_body = {**body, "model": "fake-large"}

        # Working requests, both tiers, stream and not.
        assert (await call("small", "POST", CHAT, json=body, headers=auth)).status_code == 200
        assert (await call("large", "POST", CHAT, json=large_body, headers=auth)).status_code == 200
        stream = await call("large stream", "POST", CHAT, json={**large_body, "stream": True}, headers=auth)
        assert stream.status_code == 200 and "[DONE]" in stream.text
        assert behaviour.seen_authorization[-1] == f"Bearer {secret_values.upstream_key}"

        # Wrong credentials of every kind.
        unknown = f"{KEY_PREFIX}{secrets.token_hex(8)}-{secret_values.wrong_key_secret}"
        assert (
            await call("unknown key", "POST", CHAT, json=body, headers={"authorization": f"Bearer {unknown}"})
        ).status_code == 401
        mangled = secret_values.api_key[:-1] + ("A" if secret_values.api_key[-1] != "A" else "B")
        assert (
            await call("mangled key", "POST", CHAT, json=body, headers={"authorization": f"Bearer {mangled}"})
        ).status_code == 401
        assert (
            await call(
                "key in body",
                "POST",
                CHAT,
                json={**body, "user": "x"},
                headers={"authorization": secret_values.api_key},
            )
        ).status_code == 401
        wrong_admin = {"authorization": f"Bearer {secret_values.wrong_admin_key}"}
        assert (await call("wrong admin", "GET", "/admin/keys", headers=wrong_admin)).status_code == 403
        assert (await call("key as admin", "GET", "/admin/routing", headers=auth)).status_code == 403

        # The upstream echoes our credential in its errors, before and during a stream.
        for mode in ("reject", "fail", "bad"):
            behaviour.mode = mode
            failed = await call(f"upstream {mode}", "POST", CHAT, json=large_body, headers=auth)
            assert failed.status_code >= 400
            failed_stream = await call(
                f"upstream {mode} stream", "POST", CHAT, json={**large_body, "stream": True}, headers=auth
            )
            assert failed_stream.status_code >= 400
        behaviour.mode = "stream_break"
        broken = await call("stream broken mid-way", "POST", CHAT, json={**large_body, "stream": True}, headers=auth)
        assert broken.status_code == 200 and '"error"' in broken.text
        behaviour.mode = "ok"

        # Every admin read and a few writes, then the key is revoked and refused.
        for label, method, path in [
            ("keys list", "GET", "/admin/keys"),
            ("routing", "GET", "/admin/routing"),
            ("audit", "GET", "/admin/routing/audit"),
            ("simulate", "GET", "/admin/routing/simulate?threshold=0.5"),
            ("costs", "GET", "/admin/costs?since=1h"),
            ("models", "GET", "/v1/models"),
            ("ready", "GET", "/health/ready"),
            ("live", "GET", "/health/live"),
        ]:
            headers = admin if path.startswith("/admin") else auth
            assert (await call(label, method, path, headers=headers)).status_code == 200, label
        assert (
            await call("routing put", "PUT", "/admin/routing", json={"threshold": 0.4}, headers=admin)
        ).status_code == 200
        assert (await call("revoke", "DELETE", f"/admin/keys/{key_id}", headers=admin)).status_code == 200
        assert (await call("revoked key", "POST", CHAT, json=body, headers=auth)).status_code == 401

        await services.observer.drain()
        capture.add_response("prometheus", await client.get("/metrics"))

    # A replica given the wrong Redis password: degraded, and its errors must not quote it.
    wrong_url = redis_url.replace(secret_values.redis_password, secret_values.wrong_redis_password)
    wrong_config = config.model_copy(update={"redis": config.redis.model_copy(update={"url": wrong_url})})
    async with make_app(wrong_config, environ=environ) as (client, _):
        ready = await client.get("/health/ready")
        capture.add_response("ready with wrong redis password", ready)
        assert ready.json()["checks"]["redis"] != "ok"
        capture.add_response("chat with wrong redis password", await client.post(CHAT, json=body, headers=auth))
        capture.add_response("admin with wrong redis password", await client.get("/admin/keys", headers=admin))

    await asyncio.sleep(0)  # let any last log record land
    for record in caplog.records:
        capture.add(f"log {record.name}:{record.levelname}", _format_record(record))
    out, err = capfd.readouterr()
    capture.add("stdout", out)
    capture.add("stderr", err)
    for span in spans.get_finished_spans():
        capture.add(f"span {span.name}", span.to_json())
    metrics = reader.get_metrics_data()
    assert metrics is not None
    capture.add("otel metrics", metrics.to_json())
    capture.add("redis", _redis_dump(redis_url))

    # The capture really holds what it should (so an empty search proves something).
    assert len(spans.get_finished_spans()) >= 10
    assert "slm_router" in dict(capture.pieces)["prometheus -> 200"]
    assert any(where.startswith("log ") for where, _ in capture.pieces)
    assert key_id in dict(capture.pieces)["keys list -> 200"]
    assert secret_values.upstream_key in "".join(behaviour.seen_authorization)

    leaks = {name: capture.hits(needle) for name, needle in secret_values.needles().items()}
    assert {name: where for name, where in leaks.items() if where} == {}
