"""Cold start: seconds from ``slm-router serve`` to the first successful completion.

Starts the default local profile (embedded Redis, local Ray, Serve, the vLLM CPU engine with
SmolLM2, the learned router) in a fresh state folder and polls until a ``model=router``
chat completion answers 200. Prints when the process started listening, when
``/health/ready`` first said ready, and when the first completion came back. The SmolLM2
weights are converted once per machine (``slm-router prepare-models``); run that first,
or pass ``--include-prepare`` to time it too.

    .venv/bin/python -m benchmarks.cold_start
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from benchmarks.stacks import ManagedProcess, free_port, repo_root

BODY = json.dumps({"model": "router", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 8}).encode()


def _status(url: str, body: bytes | None = None) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, TimeoutError):
        return -1


def main() -> None:
    """Time one cold start and print the milestones."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--include-prepare", action="store_true", help="also time `slm-router prepare-models`")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    exe = str(Path(sys.executable).with_name("slm-router"))
    milestones: dict[str, float] = {}
    if args.include_prepare:
        began = time.perf_counter()
        subprocess.run([exe, "prepare-models"], check=True, cwd=repo_root())
        milestones["prepare_models_s"] = time.perf_counter() - began
    port = free_port()
    state = tempfile.mkdtemp(prefix="bench-cold-")
    base = f"http://127.0.0.1:{port}"
    process = ManagedProcess(
        "cold-start",
        [exe, "serve", "--port", str(port)],
        f"{base}/health/live",
        env={"SLM_ROUTER__REDIS__STATE_DIR": f"{state}/redis"},
    )
    began = time.perf_counter()
    deadline = time.monotonic() + args.timeout
    try:
        process.spawn()
        while "first_completion_s" not in milestones:
            if process.process is None or process.process.poll() is not None:
                raise SystemExit(f"serve exited early:\n{process.log_tail()}")
            if time.monotonic() > deadline:
                raise SystemExit(f"no completion within {args.timeout:.0f} s:\n{process.log_tail()}")
            now = time.perf_counter() - began
            if "live_s" not in milestones and _status(f"{base}/health/live") == 200:
                milestones["live_s"] = now
            if "live_s" in milestones and "ready_s" not in milestones and _status(f"{base}/health/ready") == 200:
                milestones["ready_s"] = now
            if "ready_s" in milestones and _status(f"{base}/v1/chat/completions", BODY) == 200:
                milestones["first_completion_s"] = time.perf_counter() - began
            time.sleep(0.25)
    finally:
        process.stop()
        subprocess.run([str(Path(sys.executable).with_name("ray")), "stop", "--force"], capture_output=True)
    print("| milestone | seconds after `slm-router serve` |\n|---|---:|")
    for name, seconds in milestones.items():
        print(f"| {name.removesuffix('_s')} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
