#!/usr/bin/env bash
# Creates the virtual environment that holds LiteLLM's proxy for side-by-side benchmarks.
# It lives apart from .venv: the proxy extra pulls its own web stack, and the gateway never
# imports or runs the proxy. 1.108.0 is the newest release whose `proxy` extra installs from
# PyPI (later ones need a `litellm-proxy` package PyPI does not serve); it is not one of the
# blocked releases (1.82.7, 1.82.8, 1.107.x).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LITELLM_PROXY_VENV:-.bench/litellm-proxy}
VERSION=1.108.0
if [[ -x "$VENV/bin/litellm" ]] && "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('litellm') != '$VERSION')"; then
  echo "$VENV/bin/litellm"
  exit 0
fi
python3 scripts/check_blocked_versions.py <(echo "litellm==$VERSION") >/dev/null
python3.11 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --timeout 30 --retries 2 "litellm[proxy]==$VERSION" 2> >(grep -v "is ignored: it is neither" >&2)
echo "$VENV/bin/litellm"
