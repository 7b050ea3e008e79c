"""``slm-router serve`` as a process manager runs it: started from the command line, stopped by SIGTERM.

The stop is orderly: a request in flight is answered, a newcomer is told to retry (503), the
ledger is on disk, nothing is left running, and the exit status is 0.

Hosted tiers only (both at the fake upstream), so the stack starts in ~30 s without vLLM:
what is tested is the command's own life cycle, not the engines.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

from gateway.config import load_config
from gateway.redis_server import EmbeddedRedis
from loadtest.faults.ledger import read_ledger
from tests.conftest import free_port
from tests.fakes.openai_upstream import FakeOpenAIUpstream, UpstreamBehaviour, hosted_tier_settings

READY_TIMEOUT_S = 300
STOP_TIMEOUT_S = 120


def _session_processes(sid: int) -> dict[int, str]:
    """Live processes of session ``sid``, by pid: their names."""
    found: dict[int, str] = {}
    for process in psutil.process_iter(["pid", "name", "status"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if process.info["status"] != psutil.STATUS_ZOMBIE and os.getsid(process.info["pid"]) == sid:
                found[process.info["pid"]] = process.info["name"]
    return found


def _hosted_only_config(tmp_path: Path, upstream_url: str, port: int) -> Path:
    config = {
        "server": {"port": port},
        "ingress": {"num_replicas": 2},
        "redis": {"state_dir": str(tmp_path / "redis")},
        "state": {"auth": {"enabled": False}},
        "accounting": {
            "prices": {
                "small": {"kind": "per_million", "input_usd_per_million": 0.1, "output_usd_per_million": 0.2},
                "large": {"kind": "litellm", "model": "gpt-4o"},
            }
        },
        "tiers": {
            "small": hosted_tier_settings(
                upstream_url, served_model_name="fake-small", model="openai/fake-small", timeout_s=30
            ),
            "large": hosted_tier_settings(upstream_url, timeout_s=30),
        },
        "standin": {"enabled": False},
    }
    path = tmp_path / "hosted.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


class ServeProcess:
    """``slm-router serve --config CONFIG`` in a session of its own, its output read line by line."""

    def __init__(self, config: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
        env |= {"SLM_ROUTER_ADMIN_KEY": "a" * 32, "SLM_TEST_UPSTREAM_KEY": "sk-test", "PYTHONUNBUFFERED": "1"}
        command = [str(Path(sys.executable).parent / "slm-router"), "-v", "serve", "--config", str(config)]
        # Its own session, so every process the stack starts (Ray's) can be found afterwards.
        self.process = subprocess.Popen(
            command,
            cwd=config.parent,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.output: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)

    def read_until(self, marker: str, timeout_s: float) -> bool:
        """Read output until a line holds ``marker`` (False: timed out, or the process ended)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None and self._lines.empty():
                    return False
                continue
            self.output.append(line)
            if marker in line:
                return True
        return False

    def stack(self) -> dict[int, str]:
        """The processes of its session still alive."""
        return _session_processes(self.process.pid)

    def stop_with(self, signum: int) -> int:
        """Send ``signum`` to the command alone, as a process manager does; its exit status."""
        self.process.send_signal(signum)
        return self.process.wait(timeout=STOP_TIMEOUT_S)

    def printed(self) -> str:
        self.read_until("\0", 2)  # what is left
        return "".join(self.output)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def assert_nothing_left(self) -> None:
        deadline = time.monotonic() + 30
        while (left := self.stack()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not left, left


def _answers_until_closed(base_url: str, timeout_s: float = 60) -> list[httpx.Response]:
    """Ask ``GET /v1/models`` every 20 ms until the connection is refused: every answer."""
    answers: list[httpx.Response] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            answers.append(httpx.get(f"{base_url}/v1/models", timeout=5))
        except httpx.HTTPError:
            return answers
        time.sleep(0.02)
    raise AssertionError("the gateway was still answering")


def test_sigterm_stops_serve_in_order_and_keeps_the_ledger(
    tmp_path: Path, fake_upstream: FakeOpenAIUpstream, upstream_behaviour: UpstreamBehaviour
) -> None:
    port = free_port()
    config = _hosted_only_config(tmp_path, fake_upstream.base_url, port)
    serve = ServeProcess(config)
    try:
        assert serve.read_until("is ready at", READY_TIMEOUT_S), "".join(serve.output[-40:])
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "router", "messages": [{"role": "user", "content": "hello"}]},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        stack = serve.stack()
        assert len(stack) >= 3, stack  # the CLI and Ray's processes (Redis has a session of its own)

        # A request still in flight when SIGTERM comes is answered before the stack goes.
        upstream_behaviour.latency_s = 4.0
        seen = len(upstream_behaviour.requests)
        in_flight: list[int | str] = []

        def send_slow() -> None:
            try:
                body = {"model": "router", "messages": [{"role": "user", "content": "slow"}]}
                answer = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=60)
                in_flight.append(answer.status_code)
            except httpx.HTTPError as exc:
                in_flight.append(repr(exc))

        sender = threading.Thread(target=send_slow)
        sender.start()
        deadline = time.monotonic() + 30
        while len(upstream_behaviour.requests) == seen and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(upstream_behaviour.requests) == seen + 1  # it reached the upstream: in flight

        serve.process.send_signal(signal.SIGTERM)
        answers = _answers_until_closed(f"http://127.0.0.1:{port}")
        returncode = serve.process.wait(timeout=STOP_TIMEOUT_S)
        sender.join(timeout=30)
    finally:
        serve.kill()
    printed = serve.printed()
    # Newcomers while both replicas drain are told to retry; Serve's proxy used to answer them
    # with a plain-text 404 (the application was deleted while the request above finished).
    assert "drained 2 of 2 ingress replicas; requests still open: 0" in printed
    refusals = [answer for answer in answers if answer.status_code != 200]
    assert refusals, [answer.status_code for answer in answers]
    for refusal in refusals:
        assert refusal.status_code == 503, refusal.text
        assert refusal.json()["error"]["code"] == "shutting_down"
        assert refusal.headers["retry-after"] == "1"
    # Ray's handler used to take SIGTERM: the process exited at once, and Ray's core worker
    # aborted it (exit -6) with "*** SIGTERM received" and a stack trace.
    assert returncode == 0, printed[-3000:]
    assert "stopping slm-router" in printed
    assert "SIGTERM received" not in printed
    # Serve tore down its proxy with the request still in flight: "Server disconnected".
    assert in_flight == [200]
    serve.assert_nothing_left()

    # Both answers' ledger entries are on disk: a fresh server on the same folder reads them
    # back (it could not start while the old one still held the folder).
    redis = EmbeddedRedis(tmp_path / "redis")
    try:
        ledger = read_ledger(redis.start(), load_config(config).accounting.ledger.key_prefix)
    finally:
        redis.stop()
    assert ledger.requests == 2, ledger


def test_sigterm_while_starting_breaks_off_the_start(tmp_path: Path, fake_upstream: FakeOpenAIUpstream) -> None:
    # A start can take minutes (the first one prepares the model): a process manager's stop
    # (or a Ctrl-C) must not wait for it, nor fall to Ray's own handler (exit at once, abort).
    config = _hosted_only_config(tmp_path, fake_upstream.base_url, free_port())
    serve = ServeProcess(config)
    try:
        # Ray is up and Serve's proxy is starting: the application is not deployed yet.
        assert serve.read_until("Proxy starting", READY_TIMEOUT_S), "".join(serve.output[-40:])
        stack = serve.stack()
        returncode = serve.stop_with(signal.SIGTERM)
    finally:
        serve.kill()
    printed = serve.printed()
    assert len(stack) >= 3, stack  # Ray's processes were up
    assert returncode == 0, printed[-3000:]
    assert "is ready at" not in printed  # broken off, not finished first
    assert "stopping slm-router" in printed
    assert "SIGTERM received" not in printed
    serve.assert_nothing_left()
