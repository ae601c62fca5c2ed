#!/usr/bin/env bash
# Create .venv and install assetlib with the extras the demo and the tests use. Idempotent: a
# stamp records what was installed, and nothing is reinstalled until pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
EXTRAS=${ASSETLIB_EXTRAS:-dev,notebooks,ml,qwen,ray,api,dashboard}
PYTHON=${PYTHON:-python3}

scripts/install-system-deps.sh

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "assetlib needs Python >= 3.11 ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"

# The dashboard's 3D viewer script comes from the npm registry, pinned by package-lock.json.
npm_stamp="node_modules/.assetlib-installed"
npm_want="$(sha256sum package-lock.json | cut -c1-16)"
if [ ! -f "$npm_stamp" ] || [ "$(cat "$npm_stamp")" != "$npm_want" ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "installing the 3D viewer's JavaScript (npm ci)"
    npm ci --omit=peer --ignore-scripts --no-audit --no-fund --loglevel=error && echo "$npm_want" > "$npm_stamp"
  else
    echo "npm not found: the dashboard's 3D viewer will be unavailable (install Node.js and npm)" >&2
  fi
fi

stamp="$VENV/.assetlib-installed"
want="$(cat pyproject.toml constraints-cpu.txt | sha256sum | cut -c1-16) $EXTRAS"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "installing assetlib[$EXTRAS] into $VENV"
# constraints-cpu.txt pins the CPU build of torch: an unpinned torch would pull a multi-GB CUDA build.
log=$(mktemp)
if ! { "$VENV/bin/python" -m pip install -q --upgrade pip &&
       "$VENV/bin/python" -m pip install -q -c constraints-cpu.txt -e ".[$EXTRAS]"; } >"$log" 2>&1; then
  grep -v "is neither a file nor a directory" "$log" >&2
  echo "pip install failed (full log: $log)" >&2
  exit 1
fi
rm -f "$log"
"$VENV/bin/python" -c "import assetlib" || { echo "assetlib failed to install" >&2; exit 1; }
echo "$want" > "$stamp"
