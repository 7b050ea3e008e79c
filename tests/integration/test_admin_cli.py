"""``slm-router keys`` and ``slm-router costs`` against a real gateway over HTTP."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from gateway.cli import main
from gateway.http import GatewayServices, create_http_app
from gateway.redis_server import EmbeddedRedis
from gateway.serving.assembly import build_replica_services
from router_models.labelling import read_prompts
from tests.conftest import free_port
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.integration.conftest import ADMIN_KEY, gateway_config, make_tiers


@pytest.fixture()
def gateway_url(redis_server: EmbeddedRedis, fake_upstream: FakeOpenAIUpstream) -> Iterator[str]:
    import asyncio

    config = gateway_config(
        redis_server.url,
        fake_upstream.base_url,
        state={"prefix": f"cli{uuid.uuid4().hex[:6]}", "auth": {"enabled": True}, "capture": {"share": 1.0}},
    )
    port = free_port()
    ready = threading.Event()
    holder: dict[str, uvicorn.Server] = {}

    def run() -> None:
        async def serve() -> None:
            tiers = await make_tiers(config, scripted_large=True)
            services = await build_replica_services(config, tiers, environ={"SLM_ROUTER_ADMIN_KEY": ADMIN_KEY})
            app = create_http_app(
                GatewayServices.of(services),
                max_body_bytes=65536,
            )
            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
            holder["server"] = server
            ready.set()
            await server.serve()
            await services.close()

        asyncio.run(serve())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    deadline = time.monotonic() + 10
    while not holder["server"].started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    holder["server"].should_exit = True
    thread.join(10)


def test_keys_and_costs_cli(
    gateway_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    monkeypatch.setenv("SLM_ROUTER_ADMIN_KEY", ADMIN_KEY)
    assert main(["keys", "create", "--name", "cli-key", "--tenant", "acme", "--rpm", "60", "--url", gateway_url]) == 0
    out = capsys.readouterr().out
    key = out.split("store it now): ")[1].strip()
    key_id = out.split("key id: ")[1].split()[0]
    chat = httpx.post(
        f"{gateway_url}/v1/chat/completions",
        json={"model": "small-model", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {key}"},
    )
    assert chat.status_code == 200
    assert main(["keys", "list", "--url", gateway_url]) == 0
    listing = capsys.readouterr().out
    assert key_id in listing and "active" in listing and key not in listing
    # A key's routing preference: a large-model share that each artifact turns into its threshold.
    argv = ["keys", "create", "--name", "share-key", "--large-share", "0.6", "--url", gateway_url]
    assert main(argv) == 0
    share_id = capsys.readouterr().out.split("key id: ")[1].split()[0]
    assert main(["keys", "list", "--json", "--url", gateway_url]) == 0
    records = {record["key_id"]: record for record in json.loads(capsys.readouterr().out)}
    assert records[share_id]["routing_defaults"] == {"large_share": 0.6}
    assert records[key_id]["routing_defaults"] == {}
    with pytest.raises(SystemExit):  # argparse: one or the other
        main(["keys", "create", "--name", "x", "--threshold", "0.2", "--large-share", "0.6", "--url", gateway_url])
    capsys.readouterr()
    assert main(["costs", "--since", "1h", "--url", gateway_url]) == 0
    table = capsys.readouterr().out
    assert "savings" in table and "small" in table and key_id in table
    assert main(["threshold", "set", "0.42", "--url", gateway_url]) == 0
    assert '"effective_thresholds"' in capsys.readouterr().out
    assert main(["threshold", "get", "--url", gateway_url]) == 0
    assert "0.42" in capsys.readouterr().out
    assert main(["threshold", "budget", "5", "--over-budget", "reject", "--url", gateway_url]) == 0
    assert '"over_budget": "reject"' in capsys.readouterr().out
    assert main(["threshold", "audit", "--url", gateway_url]) == 0
    assert '"who": "admin"' in capsys.readouterr().out
    assert main(["threshold", "reset", "--url", gateway_url]) == 0
    reset = json.loads(capsys.readouterr().out)
    assert reset["settings"]["thresholds"] is None and reset["settings"]["budget_usd_per_hour"] == 5
    assert main(["keys", "revoke", key_id, "--url", gateway_url]) == 0
    assert "revoked" in capsys.readouterr().out
    monkeypatch.setenv("SLM_ROUTER_ADMIN_KEY", "wrong")
    with pytest.raises(SystemExit, match="403"):
        main(["keys", "list", "--url", gateway_url])


def test_capture_export_writes_label_input_and_clear_empties_it(
    gateway_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import httpx

    monkeypatch.setenv("SLM_ROUTER_ADMIN_KEY", ADMIN_KEY)
    assert main(["keys", "create", "--name", "capture", "--url", gateway_url]) == 0
    key = capsys.readouterr().out.split("store it now): ")[1].strip()
    for question in ("first?", "second?"):
        chat = httpx.post(
            f"{gateway_url}/v1/chat/completions",
            json={"model": "small-model", "messages": [{"role": "user", "content": question}]},
            headers={"authorization": f"Bearer {key}"},
        )
        assert chat.status_code == 200
    sample = tmp_path / "sample.jsonl"
    assert main(["capture", "export", "--out", str(sample), "--url", gateway_url]) == 0
    assert f"wrote 2 of 2 captured conversations to {sample}" in capsys.readouterr().out
    items, _ = read_prompts(sample, need_reference=False)
    assert [item.messages[0]["content"] for item in items] == ["second?", "first?"]
    assert main(["capture", "clear", "--url", gateway_url]) == 0
    assert "deleted 2 captured conversations" in capsys.readouterr().out
    assert main(["capture", "export", "--out", "-", "--url", gateway_url]) == 0
    assert capsys.readouterr().out == ""
