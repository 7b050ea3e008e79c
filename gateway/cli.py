"""``slm-router`` command line: serve, validate-config, prepare-models (and router tools).

Parsers are built inside :func:`main`, never at import time; heavy imports (Ray, vLLM,
torch) happen inside the command that needs them.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from gateway.config import load_config
from gateway.errors import ConfigError

__all__ = ["build_parser", "main"]


def _cmd_validate_config(args: argparse.Namespace) -> int:
    from gateway.accounting import CostCalculator

    path = args.config_option if args.config_option is not None else args.config
    try:
        config = load_config(path)
        if config.accounting.enabled:
            CostCalculator.from_config(config.accounting, config.tiers)
    except ConfigError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    print(f"{path or 'default config'}: OK ({len(config.tiers)} tiers: {', '.join(config.tiers)})")
    return 0


def _cmd_prepare_models(args: argparse.Namespace) -> int:
    from gateway.local_models import BUILTIN_PREFIX, prepare_builtin_model

    try:
        config = load_config(args.config)
        for tier in config.vllm_tiers().values():
            if tier.model.startswith(BUILTIN_PREFIX):
                path = prepare_builtin_model(tier.model[len(BUILTIN_PREFIX) :])
                print(f"{tier.model}: {path}")
    except ConfigError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    return 0


class _StopRequested(BaseException):
    """A stop signal arrived while the gateway was still starting (a BaseException, like
    KeyboardInterrupt, so that no ``except Exception`` on the way swallows it)."""


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    if args.port is not None:
        config = config.model_copy(update={"server": config.server.model_copy(update={"port": args.port})})
    if args.host is not None:
        config = config.model_copy(update={"server": config.server.model_copy(update={"host": args.host})})
    from deployments.runtime import LocalGateway
    from gateway.redis_server import EmbeddedRedisError

    stop, starting = threading.Event(), threading.Event()
    starting.set()

    def request_stop(*_: object) -> None:
        # SIGTERM (a process manager) or SIGINT (Ctrl-C): once serving, stop in order (requests
        # in flight answered, Redis saved, exit 0); while still starting, which can take minutes,
        # break off the start at once (once: a second signal must not break off the teardown).
        stop.set()
        if starting.is_set():
            starting.clear()
            raise _StopRequested

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    print("starting slm-router (first start prepares the local model; this takes a minute)...", flush=True)
    gateway = LocalGateway(config)
    try:
        try:
            gateway.start()
            starting.clear()
        except (EmbeddedRedisError, ConfigError) as exc:  # a state folder or a port in use
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except _StopRequested:
            return 0
        url = gateway.base_url
        print(
            f"\nslm-router is ready at {url}\n"
            f"  models:  curl {url}/v1/models\n"
            f"  chat:    curl {url}/v1/chat/completions -H 'Content-Type: application/json' \\\n"
            '             -d \'{"model": "router", "messages": [{"role": "user", "content": "Hello!"}]}\'\n'
            f'  OpenAI SDK: OpenAI(base_url="{url}/v1", api_key="unused")\n'
            "Press Ctrl-C to stop.",
            flush=True,
        )
        stop.wait()
    finally:
        starting.clear()
        print("stopping slm-router...", flush=True)
        gateway.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``slm-router`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="slm-router", description="OpenAI-compatible gateway that routes to small models"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start Redis, Ray Serve and the gateway on this machine")
    serve.add_argument("--config", help="YAML config (default: the packaged local profile)")
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=int, help="override server.port")
    serve.set_defaults(func=_cmd_serve)

    validate = sub.add_parser("validate-config", help="check a config file and report each error with its path")
    validate.add_argument("config", nargs="?", help="YAML config (default: the packaged one)")
    # Also as an option, so the same `--config FILE` that `serve` takes checks the file first.
    validate.add_argument("--config", dest="config_option", metavar="CONFIG", help="same as the positional CONFIG")
    validate.set_defaults(func=_cmd_validate_config)

    prepare = sub.add_parser("prepare-models", help="convert the built-in local models once (cached)")
    prepare.add_argument("--config", help="YAML config (default: the packaged one)")
    prepare.set_defaults(func=_cmd_prepare_models)

    from gateway.admin_client import register_commands as register_admin_commands

    register_admin_commands(sub)
    from router_models.cli import register_commands as register_router_commands

    register_router_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``slm-router`` console script."""
    from router_models import RouterError

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args))
    except RouterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader left (``slm-router costs | head``): not an error to report. Output still
        # buffered would raise again when Python flushes at exit, so it goes nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
