"""The CLI's side of the admin API: ``slm-router keys|threshold|capture ...`` and ``slm-router costs``.

It talks HTTP to a running gateway (``--url``, default ``http://127.0.0.1:8000``) with
the admin credential from ``$SLM_ROUTER_ADMIN_KEY``, so it works the same against a
laptop gateway and a KubeRay cluster.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

__all__ = ["register_commands"]


def _call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    import httpx

    admin_key = os.environ.get(args.admin_key_env)
    if not admin_key:
        raise SystemExit(f"set ${args.admin_key_env} to the gateway's admin credential")
    try:
        response = httpx.request(
            method,
            f"{args.url.rstrip('/')}{path}",
            json=body,
            headers={"authorization": f"Bearer {admin_key}"},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        raise SystemExit(f"cannot reach the gateway at {args.url}: {exc}") from None
    data: dict[str, Any] = response.json()
    if response.status_code >= 400:
        raise SystemExit(f"error {response.status_code}: {data.get('error', {}).get('message', data)}")
    return data


def _keys_create(args: argparse.Namespace) -> int:
    body = {
        "name": args.name,
        "tenant": args.tenant,
        "rpm_limit": args.rpm,
        "tpm_limit": args.tpm,
        "budget_usd": args.budget,
    }
    preference = {"threshold": args.threshold, "large_share": args.large_share}
    if any(value is not None for value in preference.values()):
        body["routing_defaults"] = {k: v for k, v in preference.items() if v is not None}
    data = _call(args, "POST", "/admin/keys", {k: v for k, v in body.items() if v is not None})
    print(f"key id: {data['key_id']}\ntenant: {data['tenant']}")
    print(f"API key (shown once, store it now): {data['key']}")
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    data = _call(args, "GET", "/admin/keys")
    if args.json:
        print(json.dumps(data["data"], indent=2))
        return 0
    print(f"{'key_id':<18} {'name':<20} {'tenant':<16} {'rpm':>6} {'tpm':>8} {'budget_usd':>10} status")
    for key in data["data"]:
        status = "revoked" if key.get("revoked_at") else "active"
        print(
            f"{key['key_id']:<18} {key['name'][:20]:<20} {key['tenant'][:16]:<16} {key.get('rpm_limit') or '-':>6} "
            f"{key.get('tpm_limit') or '-':>8} {key.get('budget_usd') or '-':>10} {status}"
        )
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    _call(args, "DELETE", f"/admin/keys/{args.key_id}")
    print(f"revoked {args.key_id}")
    return 0


def _costs(args: argparse.Namespace) -> int:
    data = _call(args, "GET", f"/admin/costs?since={args.since}")
    print(json.dumps(data["rows"], indent=2) if args.json else data["table"])
    return 0


def _threshold(args: argparse.Namespace) -> int:
    action = args.threshold_command
    if action == "get":
        data = _call(args, "GET", "/admin/routing")
    elif action == "simulate":
        data = _call(args, "GET", f"/admin/routing/simulate?threshold={args.value}")
    elif action == "audit":
        data = _call(args, "GET", "/admin/routing/audit")
    elif action == "reset":
        data = _call(args, "PUT", "/admin/routing", {"reset": True})
    else:
        change: dict[str, Any] = {
            "set": {"threshold": args.value},
            "target": {"target_share": args.value},
            "budget": {"budget_usd_per_hour": args.value} if args.value is not None else {"clear_budget": True},
        }[action]
        if action == "budget" and args.over_budget:
            change["over_budget"] = args.over_budget
        data = _call(args, "PUT", "/admin/routing", change)
    print(json.dumps(data, indent=2))
    return 0


def _capture(args: argparse.Namespace) -> int:
    if args.capture_command == "clear":
        print(f"deleted {_call(args, 'DELETE', '/admin/capture')['deleted']} captured conversations")
        return 0
    data = _call(args, "GET", f"/admin/capture?limit={args.limit}")
    lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in data["data"])
    if args.out == "-":
        print(lines, end="")
    else:
        with open(args.out, "w", encoding="utf-8") as out:
            out.write(lines)
        sampling = "" if data["sampling"] else " (state.capture.share is 0: nothing new is being kept)"
        print(f"wrote {len(data['data'])} of {data['kept']} captured conversations to {args.out}{sampling}")
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("SLM_ROUTER_URL", "http://127.0.0.1:8000"), help="gateway URL")
    parser.add_argument("--admin-key-env", default="SLM_ROUTER_ADMIN_KEY", help="variable holding the admin key")


def register_commands(sub: Any) -> None:
    """Add ``keys``, ``threshold``, ``capture`` and ``costs`` to the ``slm-router`` parser."""
    keys = sub.add_parser("keys", help="create, list and revoke API keys (admin API)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key; its secret is printed once")
    create.add_argument("--name", required=True)
    create.add_argument("--tenant", default="default")
    create.add_argument("--rpm", type=int, help="requests per minute")
    create.add_argument("--tpm", type=int, help="tokens per minute")
    create.add_argument("--budget", type=float, help="dollar budget")
    routing = create.add_mutually_exclusive_group()
    routing.add_argument("--threshold", type=float, help="this key's routing threshold (on the loaded router's scale)")
    routing.add_argument(
        "--large-share",
        type=float,
        help="this key's share for the large model, e.g. 0.5; each router artifact turns it into its own threshold",
    )
    _common(create)
    create.set_defaults(func=_keys_create)
    listing = keys_sub.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--json", action="store_true")
    _common(listing)
    listing.set_defaults(func=_keys_list)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    _common(revoke)
    revoke.set_defaults(func=_keys_revoke)

    threshold = sub.add_parser("threshold", help="read or change live routing (threshold, target share, budget)")
    actions = threshold.add_subparsers(dest="threshold_command", required=True)
    for name, help_text, value_type in (
        ("get", "settings in force, effective thresholds, budget use, realised large share", None),
        ("set", "a fixed threshold in [0, 1] for every replica", float),
        ("target", "keep this share of traffic on the large model, e.g. 0.25", float),
        ("budget", "cap large-model spend in USD per hour (omit the value to remove the cap)", float),
        ("reset", "back to the configured (or calibrated) thresholds: drops set and target (not budget)", None),
        ("simulate", "what a threshold would have done on recent traffic", float),
        ("audit", "recent changes: who, when, old and new value", None),
    ):
        action = actions.add_parser(name, help=help_text)
        if value_type is not None:
            action.add_argument("value", type=value_type, nargs="?" if name == "budget" else None)
        if name == "budget":
            action.add_argument("--over-budget", choices=["small", "reject"], help="what to do at the cap")
        _common(action)
        action.set_defaults(func=_threshold)

    capture = sub.add_parser("capture", help="export or clear the sampled conversations (state.capture)")
    capture_sub = capture.add_subparsers(dest="capture_command", required=True)
    export = capture_sub.add_parser("export", help="write them as JSONL for slm-router label, newest first")
    export.add_argument("--out", required=True, help="JSONL file to write, or - for stdout")
    export.add_argument("--limit", type=int, default=10_000, help="at most this many conversations")
    _common(export)
    export.set_defaults(func=_capture)
    clear = capture_sub.add_parser("clear", help="delete every captured conversation")
    _common(clear)
    clear.set_defaults(func=_capture)

    costs = sub.add_parser("costs", help="requests, tokens, cost, baseline and savings by tier and key")
    costs.add_argument("--since", default="24h", help="look-back, e.g. 30m, 1h, 7d")
    costs.add_argument("--json", action="store_true")
    _common(costs)
    costs.set_defaults(func=_costs)
