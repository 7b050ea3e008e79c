#!/usr/bin/env bash
# Run the slm-router Locust load test headless for a bounded time; writes CSV, HTML and summary JSON.
#
#   loadtest/run.sh [--host URL] [--users N] [--spawn-rate R] [--time 60s] [--out PREFIX] [-- LOCUST ARGS...]
#
# Outputs: PREFIX_stats.csv, PREFIX_stats_history.csv, PREFIX_failures.csv, PREFIX_exceptions.csv,
# PREFIX.html and PREFIX_slm_router.json. Exit status: 0, or 1 when more than
# SLM_ROUTER_LOADTEST_MAX_FAIL_RATIO (default 0.01) of the chat requests failed or none completed;
# 2 on bad arguments. Everything else is configured through the environment (loadtest/README.md).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"

host="${SLM_ROUTER_LOADTEST_HOST:-http://127.0.0.1:8000}"
users=8
spawn_rate=""
run_time="60s"
out="$repo/loadtest/out/run-$(date +%Y%m%d-%H%M%S)"
locust="${LOCUST:-$repo/.venv/bin/locust}"

usage() { sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while (($#)); do
    case "$1" in
        --host) host="${2:?--host needs a URL}"; shift 2 ;;
        --users|-u) users="${2:?--users needs a number}"; shift 2 ;;
        --spawn-rate|-r) spawn_rate="${2:?--spawn-rate needs a number}"; shift 2 ;;
        --time|-t) run_time="${2:?--time needs a duration such as 60s}"; shift 2 ;;
        --out|-o) out="${2:?--out needs a path prefix}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; break ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

# Start every user within about two seconds unless told otherwise.
spawn_rate="${spawn_rate:-$(( users > 2 ? (users + 1) / 2 : 1 ))}"
mkdir -p "$(dirname "$out")"

# --stop-timeout lets users finish the request in flight, so the summary counts every request
# the gateway served (and billed). --only-summary keeps the console readable.
exec "$locust" -f "$here/locustfile.py" --headless --only-summary \
    --host "$host" --users "$users" --spawn-rate "$spawn_rate" --run-time "$run_time" \
    --stop-timeout 30 --csv "$out" --html "$out.html" "$@"
