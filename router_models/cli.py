"""Command-line glue: ``train``, ``calibrate``, ``eval`` and ``label`` subcommands.

The gateway's ``slm-router`` CLI calls :func:`register_commands` on its argparse subparsers;
``python -m router_models.cli ...`` runs the same commands standalone. Nothing is parsed or
imported heavily at import time.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from router_models.encoder import DEFAULT_PROFILE, PROFILES
from router_models.errors import RouterError

DEFAULT_EVAL_ROUTERS = ("lexical", "embedding", "knn", "ensemble", "stacked", "random", "oracle")


DEFAULT_DATASETS_ARG = "mmlu,gsm8k"
_LABELS_HELP = (
    "JSONL of labelled conversations from your traffic (repeatable; format in router_models/labels.py "
    "and docs/routers.md)"
)


def _dataset_names(arg: str) -> tuple[str, ...]:
    """``--datasets``: comma-separated RouteLLM sets; ``none`` (or empty) for none."""
    names = tuple(n.strip() for n in arg.split(",") if n.strip())
    return () if names == ("none",) else names


def _cmd_train(args: argparse.Namespace) -> int:
    from router_models.training import train_and_save

    argv = ["--router", args.router, "--seed", str(args.seed), "--out", str(args.out)]
    if args.encoder != DEFAULT_PROFILE:
        argv += ["--encoder", args.encoder]
    for path in args.labels:
        argv += ["--labels", path]
    if args.datasets is not None:
        argv += ["--datasets", args.datasets]
    # Labelled traffic trains alone unless public sets are asked for: adding MMLU to GSM8K's
    # own labels lowered APGR by 0.02-0.05 for every router (docs/routers.md).
    datasets = args.datasets if args.datasets is not None else ("none" if args.labels else DEFAULT_DATASETS_ARG)
    command = "slm-router train " + " ".join(shlex.quote(a) for a in argv)
    meta = train_and_save(
        args.router,
        Path(args.out),
        data_dir=Path(args.data) if args.data else None,
        seed=args.seed,
        datasets=_dataset_names(datasets),
        labels=[Path(p) for p in args.labels],
        progress=not args.quiet,
        command=command,
        encoder_profile=args.encoder,
    )
    print(f"wrote {args.out} ({meta['router']}, default threshold {meta['default_threshold']:.4f})")
    for ds, m in meta["metrics"]["per_dataset"].items():
        cpts = f"CPT(50%) {100 * m['cpt50']:.1f}%  CPT(80%) {100 * m['cpt80']:.1f}%"
        print(f"  held-out {ds:6s} APGR {m['apgr']:.3f}  {cpts}")
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from router_models.artifacts import load_router, read_metadata
    from router_models.calibration import calibration_table, threshold_for_share, threshold_from_table
    from router_models.labels import read_conversations

    if args.reference:
        router = load_router(Path(args.artifact))
        convs = read_conversations(Path(args.reference))
        scores = router.score_many(convs)
        table = calibration_table(scores)
        threshold = threshold_for_share(scores, args.large_share)
        source = f"{len(convs)} reference prompts from {args.reference}"
    else:
        router = load_router(Path(args.artifact))  # verifies hashes before trusting the table
        meta = read_metadata(Path(args.artifact))
        table = meta["calibration"]["table"]
        try:
            threshold = threshold_from_table(table, args.large_share)
        except ValueError as exc:
            raise RouterError(f"--large-share: {exc}") from None
        source = meta["calibration"]["reference"] + " (stored in the artifact)"
    print(f"router: {router.name}   reference: {source}")
    print(f"threshold for large share {args.large_share:.2f}: {threshold:.6f}   (route large iff score >= threshold)")
    print(f"{'large share':>12} {'threshold':>12}")
    for row in table:
        print(f"{row['large_share']:>12.2f} {row['threshold']:>12.6f}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from router_models.data import load_dataset
    from router_models.evaluation import evaluate, format_table, write_report
    from router_models.label_agreement import format_agreement, repeated_prompt_agreement
    from router_models.labels import LABELS_NAME, load_labels

    routers = [r for chunk in args.routers for r in chunk.split(",") if r]
    data_dir = Path(args.data) if args.data else None
    data = {name: load_dataset(name, data_dir) for name in _dataset_names(args.datasets)}
    if args.labels:
        data[LABELS_NAME] = load_labels([Path(p) for p in args.labels])
    if not data:
        raise RouterError("nothing to evaluate: name data sets, label files, or both")
    results = evaluate(
        routers,
        data=data,
        folds=args.folds,
        seed=args.seed,
        progress=not args.quiet,
        transfer=not args.no_transfer,
        encoder_profile=args.encoder,
    )
    print(format_table(results))
    # How stable the labels themselves are bounds how to read the table (docs/routers.md).
    for labelled in data.values():
        print(format_agreement(repeated_prompt_agreement(labelled)))
    paths = write_report(results, Path(args.out))
    print(f"wrote {paths['txt']}, {paths['json']}, {paths['png']}")
    return 0


def _cmd_label(args: argparse.Namespace) -> int:
    import asyncio
    import os

    from openai import AsyncOpenAI

    from router_models.labelling import (
        DEFAULT_JUDGE_MAX_TOKENS,
        DEFAULT_REASONING_JUDGE_MAX_TOKENS,
        Endpoint,
        Labeller,
        label_file,
        read_prompts,
    )

    if args.judge_max_tokens is None:
        args.judge_max_tokens = DEFAULT_REASONING_JUDGE_MAX_TOKENS if args.judge_reasoning else DEFAULT_JUDGE_MAX_TOKENS
    if min(args.concurrency, args.max_tokens, args.judge_max_tokens) < 1 or args.timeout <= 0 or args.retries < 0:
        raise RouterError(
            "--concurrency, --max-tokens and --judge-max-tokens must be >= 1, --timeout > 0, --retries >= 0"
        )
    items, duplicates = read_prompts(Path(args.prompts), need_reference=args.judge is None)
    clients: dict[tuple[str, str], AsyncOpenAI] = {}

    def endpoint(base_url: str, key_env: str, model: str) -> Endpoint:
        # A gateway without API keys accepts any bearer token; the SDK insists on one.
        key = os.environ.get(key_env) or "unused"
        if (base_url, key) not in clients:
            clients[(base_url, key)] = AsyncOpenAI(
                base_url=base_url, api_key=key, timeout=args.timeout, max_retries=args.retries
            )
        return Endpoint(clients[(base_url, key)], model)

    judge = None
    if args.judge:
        judge = endpoint(args.judge_base_url or args.base_url, args.judge_api_key_env or args.api_key_env, args.judge)
    labeller = Labeller(
        endpoint(args.base_url, args.api_key_env, args.weak),
        endpoint(args.base_url, args.api_key_env, args.strong),
        judge,
        args.max_tokens,
        args.judge_max_tokens,
        judge_reasoning=args.judge_reasoning,
    )

    async def run() -> None:
        try:
            await label_file(items, labeller, Path(args.out), args.concurrency, progress=not args.quiet)
        finally:
            for client in clients.values():
                await client.close()

    asyncio.run(run())
    report = labeller.report
    print(
        f"{args.out}: {report.labelled} labelled now, {report.skipped} already there, "
        f"{len(report.failed)} failed, {duplicates} repeated prompts skipped (grader: {labeller.grader})"
    )
    for role, (prompt_tokens, completion_tokens) in report.tokens.items():
        if prompt_tokens or completion_tokens:
            print(f"  {role:6s} model: {prompt_tokens} prompt + {completion_tokens} completion tokens")
    if report.reused:
        print(f"  {report.reused} replies reused from the earlier run (not asked again)")
    if report.truncated:
        print(f"  {report.truncated} answers stopped at --max-tokens {args.max_tokens} and were graded as they were")
    for where, reason in report.failed:
        print(f"  failed {where}: {reason}", file=sys.stderr)
    if report.failed:
        print(
            "  rerun the same command to retry the failed prompts (labelled ones are kept, and so are the "
            f"replies that did arrive, in {args.out}.replies)",
            file=sys.stderr,
        )
    return 1 if report.failed else 0


def _add_encoder_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--encoder",
        default=DEFAULT_PROFILE,
        choices=sorted(PROFILES),
        help=f"MiniLM encoder profile for the embedding routers (default {DEFAULT_PROFILE})",
    )


def register_commands(subparsers: Any) -> None:
    """Add ``train``, ``calibrate``, ``eval`` and ``label`` to an argparse ``add_subparsers()`` object.

    Each subparser sets ``func`` (``Namespace -> int`` exit code); the caller runs
    ``args.func(args)``. :class:`RouterError` is raised for user-facing failures.
    """
    p = subparsers.add_parser("train", help="train a router and write its artifact")
    p.add_argument("--router", required=True, help="router name (lexical, embedding, knn, ensemble, stacked)")
    p.add_argument(
        "--data", default=None, help="RouteLLM data dir (default ../shared/data/routellm or $SLM_ROUTER_DATA)"
    )
    p.add_argument("--out", required=True, help="artifact output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--datasets",
        default=None,
        help="comma-separated RouteLLM data sets to train on, or none (default mmlu,gsm8k; none with --labels)",
    )
    p.add_argument("--labels", action="append", default=[], metavar="JSONL", help=_LABELS_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_encoder_option(p)
    p.set_defaults(func=_cmd_train)

    p = subparsers.add_parser("calibrate", help="print the threshold for a large-model share")
    p.add_argument("--artifact", required=True, help="router artifact directory")
    p.add_argument("--large-share", type=float, default=0.3)
    p.add_argument(
        "--reference", default=None, help="JSONL of prompts/conversations to calibrate on instead of the stored table"
    )
    p.set_defaults(func=_cmd_calibrate)

    p = subparsers.add_parser("eval", help="cross-validated RouteLLM metrics + cost/quality PNG")
    p.add_argument("--data", default=None, help="RouteLLM data dir")
    p.add_argument(
        "--routers", nargs="+", default=list(DEFAULT_EVAL_ROUTERS), help="routers (space or comma separated)"
    )
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="directory for eval.txt/eval.json/cost_quality.png")
    p.add_argument("--no-transfer", action="store_true", help="skip the cross-data-set settings")
    p.add_argument(
        "--datasets", default=DEFAULT_DATASETS_ARG, help="comma-separated RouteLLM data sets to evaluate on, or none"
    )
    p.add_argument("--labels", action="append", default=[], metavar="JSONL", help=_LABELS_HELP)
    p.add_argument("--quiet", action="store_true")
    _add_encoder_option(p)
    p.set_defaults(func=_cmd_eval)

    p = subparsers.add_parser(
        "label", help="label prompts for train --labels: both models answer, each answer is graded"
    )
    p.add_argument("--prompts", required=True, help="JSONL: messages or prompt, optional reference, per line")
    p.add_argument("--out", required=True, help="label JSONL to write (appended to; a rerun resumes)")
    p.add_argument("--base-url", default="http://127.0.0.1:8000/v1", help="OpenAI-compatible API (the gateway)")
    p.add_argument("--weak", required=True, help="the small model's name at --base-url")
    p.add_argument("--strong", required=True, help="the large model's name at --base-url")
    p.add_argument("--judge", default=None, help="judge model (default: grade against each prompt's reference)")
    p.add_argument("--judge-base-url", default=None, help="API of the judge (default --base-url)")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    p.add_argument("--judge-api-key-env", default=None, help="environment variable of the judge's key")
    p.add_argument("--concurrency", type=int, default=8, help="prompts in flight at once")
    p.add_argument("--max-tokens", type=int, default=1024, help="answer length cap for both models")
    p.add_argument(
        "--judge-max-tokens",
        type=int,
        default=None,
        help="the judge's reply cap (default 16; 4096 with --judge-reasoning, where reasoning counts too)",
    )
    p.add_argument(
        "--judge-reasoning",
        action="store_true",
        help="the judge is a reasoning model: send max_completion_tokens and no temperature (which they refuse)",
    )
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per call")
    p.add_argument("--retries", type=int, default=2, help="retries of a failed call")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_label)


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point (``python -m router_models.cli``)."""
    parser = argparse.ArgumentParser(prog="router_models", description=__doc__)
    register_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except RouterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
